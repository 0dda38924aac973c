"""Transfer evaluation of the learned preset against ``auto`` and the tuned oracle.

``evaluate(db, source)`` fills a bench results database (one SQLite row per run):

1. the oracle's runs (``adamw-cosine`` over its refined lr grid, seeds 0 and 1) are copied
   from ``source`` (the committed ``docs/bench/results.sqlite``): they are plain torch
   (AdamW + ``LambdaLR``), so cadence's version does not change them;
2. ``cadence-learned`` and ``cadence-auto`` run the ``standard`` suite (every workload,
   the decade grid of initial lrs 1e-5 … 1, seeds 0 and 1), both at the current code;
3. ``extra_seeds`` more seeds at the default start (lr 1e-3) for both presets and at the
   oracle's chosen lr for the oracle, so the headline numbers have 4–5 seeds.

``transfer_table(db, trained_on)`` turns the rows into the markdown table of
docs/learned.md. The oracle's lr is chosen on the selection split from seeds 0 and 1
(as in docs/bench/report.md); every quality is a median over seeds on the test split;
ratios > 1 beat the oracle (losses inverted), diverged runs count as the worst value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cadence.bench.db import ResultsDB
from cadence.bench.oracle import ORACLE_METHOD, lr_key, score, select_oracle
from cadence.bench.report import _worst_to_value, ratio
from cadence.bench.runner import RunSpec, run_specs
from cadence.bench.suites import Suite, get_suite

METHODS = ("cadence-learned", "cadence-auto")
DEFAULT_START = 1e-3
BASE_SEEDS = (0, 1)


def copy_oracle_rows(db: ResultsDB, source: str | Path) -> int:
    """Copy the oracle's rows from ``source`` into ``db`` (skipping those present)."""
    done = db.done_keys()
    n = 0
    with ResultsDB(source) as src:
        for row in src.rows(method=ORACLE_METHOD):
            if row["run_key"] not in done:
                db.insert(row)
                n += 1
    return n


def grid_specs(suite: Suite, method: str) -> list[RunSpec]:
    """``method`` over each plan's lr grid and seeds, at the plan's budget (a suite's plans
    list their own methods; the learned preset is not among them)."""
    out = []
    for plan in suite.plans:
        t = plan.specs([ORACLE_METHOD])[0]
        out += [RunSpec(plan.workload, method, lr, seed, t.steps, t.eval_every)
                for lr in plan.lrs(method) for seed in plan.seeds]
    return out


def evaluate(db_path: str | Path, source: str | Path, extra_seeds: Sequence[int] = (2, 3, 4),
             workers: int | None = None, suite: str = "standard",
             log: Any = print) -> dict[str, int]:
    """Run (or resume) the evaluation described in the module docstring, in the order
    that keeps the most useful rows if it is stopped: the learned preset over the grid,
    then the extra seeds of all three arms, then ``auto`` over the grid."""
    the_suite = get_suite(suite)
    counts: dict[str, int] = {}

    def add(more: dict[str, int]) -> None:
        for k, v in more.items():
            counts[k] = counts.get(k, 0) + v

    with ResultsDB(db_path) as db:
        copied = copy_oracle_rows(db, source)
        log(f"[cadence learn] {copied} oracle rows copied from {source}")
        add(run_specs(grid_specs(the_suite, METHODS[0]), db, workers=workers, log=log))
        extra: list[RunSpec] = []
        for plan in the_suite.plans:
            template = plan.specs([ORACLE_METHOD])[0]
            rows = [r for r in db.rows(workload=plan.workload, method=ORACLE_METHOD)
                    if r["steps"] == template.steps and r["seed"] in BASE_SEEDS]
            chosen = select_oracle(rows)
            for seed in extra_seeds:
                for method in METHODS:
                    extra.append(RunSpec(plan.workload, method, DEFAULT_START, seed,
                                         template.steps, template.eval_every))
                if chosen is not None:
                    extra.append(RunSpec(plan.workload, ORACLE_METHOD, chosen["lr"], seed,
                                         template.steps, template.eval_every))
        add(run_specs(extra, db, workers=workers, log=log))
        for method in METHODS[1:]:
            add(run_specs(grid_specs(the_suite, method), db, workers=workers, log=log))
    return counts


def _median(values: Iterable[float]) -> float:
    vals = list(values)
    return float(statistics.median(vals)) if vals else math.nan


def analyse_transfer(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per workload: the oracle and, per method, the default-start and tuned-start numbers."""
    out: dict[str, dict[str, Any]] = {}
    for wl in sorted({r["workload"] for r in rows}):
        wrows = [r for r in rows if r["workload"] == wl and r["status"] in ("ok", "diverged")]
        orows = [r for r in wrows if r["method"] == ORACLE_METHOD]
        base = [r for r in orows if r["seed"] in BASE_SEEDS]
        chosen = select_oracle(base) if base else None
        if chosen is None:
            continue
        steps = base[0]["steps"]
        higher = bool(base[0]["config"].get("higher_is_better", True))
        at = [r for r in orows if lr_key(r["lr"]) == chosen["lr"] and r["steps"] == steps]
        oracle_vals = [_worst_to_value(score(r, "test"), higher) for r in at]
        oracle_q = _median(oracle_vals)
        info: dict[str, Any] = {"higher": higher, "primary": base[0]["config"].get("primary"),
                                "oracle_lr": chosen["lr"], "oracle_q": oracle_q,
                                "oracle_seeds": len(at), "steps": steps, "methods": {}}
        for m in METHODS:
            mrows = [r for r in wrows if r["method"] == m and r["steps"] == steps]
            if not mrows:
                continue
            d = [r for r in mrows if lr_key(r["lr"]) == lr_key(DEFAULT_START)]
            dvals = [_worst_to_value(score(r, "test"), higher) for r in d]
            by_lr: dict[float, list[float]] = {}
            sel_lr: dict[float, list[float]] = {}
            for r in mrows:
                if r["seed"] in BASE_SEEDS:
                    by_lr.setdefault(lr_key(r["lr"]), []).append(
                        _worst_to_value(score(r, "test"), higher))
                    sel_lr.setdefault(lr_key(r["lr"]), []).append(score(r, "selection"))
            test_med = {lr: _median(v) for lr, v in by_lr.items()}
            sel_med = {lr: _median(v) for lr, v in sel_lr.items()}
            finite = {lr: v for lr, v in sel_med.items() if math.isfinite(v)}
            tuned = (max if higher else min)(finite, key=finite.__getitem__) if finite else None
            worst_lr = ((min if higher else max)(test_med, key=test_med.__getitem__)
                        if test_med else None)
            info["methods"][m] = {
                "default_q": _median(dvals), "default_seeds": len(dvals),
                "default_ratio": ratio(_median(dvals), oracle_q, higher),
                "seed_ratios": sorted(ratio(v, oracle_q, higher) for v in dvals),
                "tuned_lr": tuned,
                "tuned_ratio": ratio(test_med[tuned], oracle_q, higher) if tuned else math.nan,
                "worst_ratio": (ratio(test_med[worst_lr], oracle_q, higher)
                                if worst_lr is not None else math.nan),
                "worst_lr": worst_lr,
                "diverged": sum(r["status"] == "diverged" for r in mrows), "runs": len(mrows),
            }
        out[wl] = info
    return out


def _f(v: float, digits: int = 4) -> str:
    if not math.isfinite(v):
        return "—" if math.isnan(v) else "∞"
    return f"{v:.{digits}g}"


def transfer_table(db_path: str | Path, trained_on: Sequence[str]) -> str:
    """The markdown transfer table of docs/learned.md from the database at ``db_path``."""
    with ResultsDB(db_path) as db:
        rows = db.rows()
    data = analyse_transfer(rows)
    lines = [
        "| workload | seen in training | oracle Q (lr) | learned Q @1e-3 | ratio learned/oracle "
        "(per seed) | auto Q @1e-3 | ratio auto/oracle | learned/auto | learned ratio at "
        "its selected start | learned worst start (ratio) | diverged learned / auto |",
        "|" + "---|" * 11,
    ]
    for wl, info in data.items():
        ms = info["methods"]
        le, au = ms.get("cadence-learned"), ms.get("cadence-auto")
        if le is None or au is None:
            continue
        seen = "yes" if wl in trained_on else "**no**"
        per_seed = ", ".join(_f(r, 3) for r in le["seed_ratios"])
        rel = (le["default_ratio"] / au["default_ratio"] if au["default_ratio"] else math.nan)
        lines.append(
            f"| {wl} ({info['primary']}) | {seen} | {_f(info['oracle_q'])} "
            f"({info['oracle_lr']:.3g}, {info['oracle_seeds']} seeds) | {_f(le['default_q'])} | "
            f"**{_f(le['default_ratio'])}** ({per_seed}) | {_f(au['default_q'])} | "
            f"{_f(au['default_ratio'])} | {_f(rel)} | {_f(le['tuned_ratio'])} | "
            f"{_f(le['worst_ratio'], 3)} (start {le['worst_lr'] or math.nan:.0e}) | "
            f"{le['diverged']}/{le['runs']} · {au['diverged']}/{au['runs']} |"
        )
    return "\n".join(lines)
