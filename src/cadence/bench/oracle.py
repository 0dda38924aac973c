"""The oracle: AdamW + 5 % warm-up + cosine at the peak learning rate a careful
practitioner would pick with hindsight.

The rate is chosen on the *selection* split by the workload's primary metric (accuracy
for classification, never validation loss there; loss for language modelling and
regression), as the median over seeds, with diverged runs scored worst. The grid is
refined ×2 around the winner (and extended when the winner sits on an edge). The
oracle's quality is then read on the *test* split. Everything here works on database
rows, so reports need no workload code.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

ORACLE_METHOD = "adamw-cosine"


def primary_of(row: dict[str, Any]) -> tuple[str, bool]:
    """(primary metric key, higher is better) from a row's stored configuration."""
    cfg = row["config"]
    return str(cfg.get("primary", "acc")), bool(cfg.get("higher_is_better", True))


def score(row: dict[str, Any], split: str = "selection") -> float:
    """The row's final primary metric on ``split``; diverged, errored or non-finite runs
    get the worst value (−∞ when higher is better, +∞ otherwise)."""
    key, higher = primary_of(row)
    worst = -math.inf if higher else math.inf
    if row.get("status") != "ok":
        return worst
    value = (row.get("final_metrics") or {}).get(f"{split}_{key}")
    if value is None or not math.isfinite(value):
        return worst
    floor = row["config"].get("metric_floor")
    return max(float(value), float(floor)) if floor is not None else float(value)


def lr_key(lr: float) -> float:
    """Learning rates compared at 6 significant digits (grid points are computed)."""
    return float(f"{lr:.6g}")


def median_by_lr(rows: Iterable[dict[str, Any]], split: str = "selection") -> dict[float, float]:
    by_lr: dict[float, list[float]] = defaultdict(list)
    for r in rows:
        by_lr[lr_key(r["lr"])].append(score(r, split))
    return {lr: _median(v) for lr, v in sorted(by_lr.items())}


def _median(values: list[float]) -> float:
    # median with ±∞ allowed (statistics.median handles them when no NaN is present)
    return float(statistics.median(values)) if values else math.nan


def select_oracle(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Pick the oracle among one workload's oracle-method rows.

    Returns ``{"lr", "selection", "target", "test", "n_runs", "grid"}`` — the
    selection-split median at the winner, the time-to-target target, and the test-split
    median (the quality every ratio is taken against) — or ``None`` when no oracle row
    finished. Metrics are floored at the workload's ``metric_floor`` when it has one.
    """
    rows = [r for r in rows if r["method"] == ORACLE_METHOD]
    if not rows:
        return None
    _, higher = primary_of(rows[0])
    sel = median_by_lr(rows, "selection")
    finite = {lr: v for lr, v in sel.items() if math.isfinite(v)}
    if not finite:
        return None
    best_lr = (max if higher else min)(finite, key=lambda lr: finite[lr])
    winners = [r for r in rows if lr_key(r["lr"]) == best_lr]
    test = median_by_lr(winners, "test")[best_lr]
    # the time-to-target target: a median the oracle itself reaches on at least half of
    # its seeds (the lower middle value when higher is better, the upper one otherwise)
    pick = statistics.median_low if higher else statistics.median_high
    target = float(pick([score(r, "selection") for r in winners]))
    return {
        "lr": best_lr, "selection": finite[best_lr], "target": target, "test": test,
        "n_runs": len(rows), "grid": sorted(sel),
    }


def refinement_points(rows: list[dict[str, Any]], spacing: float) -> list[float]:
    """Rates to add around the current winner: half the grid ``spacing`` (in decades) on
    each side, or one full step beyond the grid when the winner sits on its edge."""
    chosen = select_oracle(rows)
    if chosen is None:
        return []
    grid = chosen["grid"]
    lr = chosen["lr"]
    if lr == grid[0]:
        return [lr_key(lr / 10**spacing)]
    if lr == grid[-1] and lr < 1.0:
        return [lr_key(lr * 10**spacing)]
    half = 10 ** (spacing / 2)
    return [p for p in (lr_key(lr / half), lr_key(lr * half)) if p not in grid]
