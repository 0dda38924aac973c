"""The width study: does the scale rule's predicted lr track each width's tuned lr?

From a results database holding ``mnist1d-mlp-w<width>`` runs (``cadence bench --suite
width``), one row per width:

* **predicted lr** — what the scale rule (``cadence.controllers.scale``) proposes for that
  model with Adam, as ``auto`` applies it: ``0.5 / fan_in`` with ``fan_in`` estimated from
  the parameter count (``sqrt(num_params / 12)``); the *μP lr* column gives the same rule
  with the measured median fan-in of the weight matrices instead;
* **tuned oracle lr** — the oracle's winner (``adamw-cosine`` over the half-decade grid
  refined ×2, chosen on the selection split, ``oracle.select_oracle``);
* **ratio** — predicted / tuned (1 is a perfect prediction; the grid's resolution after
  refinement is a factor 10^0.25 ≈ 1.8);
* **auto Q** / **oracle Q** — median test accuracy over seeds of ``cadence-auto`` at its
  default start and of the oracle at its tuned lr (diverged runs count as 0).

The predicted lr is computed from the model (built, not trained); everything else comes
from the database rows.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

from .db import ResultsDB
from .methods import get_method
from .oracle import lr_key, primary_of, score, select_oracle

AUTO_METHOD = "cadence-auto"
_NAME = re.compile(r"^mnist1d-mlp-w(\d+)$")


def width_of(workload: str) -> int | None:
    """The width of a ``mnist1d-mlp-w<width>`` workload name, else ``None``."""
    m = _NAME.match(workload)
    return int(m.group(1)) if m else None


def predicted_lr(width: int) -> dict[str, float]:
    """The scale rule's Adam lr for the MNIST-1D MLP of ``width`` (``"rule"``: as ``auto``
    applies it, fan-in from the parameter count; ``"mup"``: from the median fan-in)."""
    from cadence.controllers.scale import estimate_fan_in, scale_defaults

    from .workloads.mnist1d import MLP

    model = MLP(width)
    params = [p for p in model.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    return {
        "num_params": float(n),
        "rule": scale_defaults(n, "adamw").lr,
        "mup": scale_defaults(n, "adamw", fan_in=estimate_fan_in(params)).lr,
    }


def _median_q(rows: list[dict[str, Any]]) -> float:
    if not rows:
        return math.nan
    _, higher = primary_of(rows[0])
    vals = [score(r, "test") for r in rows]
    vals = [0.0 if (higher and v == -math.inf) else v for v in vals]
    return float(statistics.median(vals))


def width_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per width found in ``rows`` (sorted by width); see the module doc."""
    by_width: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        w = width_of(r["workload"])
        if w is not None and r.get("config") and r["status"] in ("ok", "diverged"):
            by_width.setdefault(w, []).append(r)
    out = []
    for w, wrows in sorted(by_width.items()):
        pred = predicted_lr(w)
        oracle = select_oracle(wrows)
        tuned = oracle["lr"] if oracle else math.nan
        auto = [r for r in wrows if r["method"] == AUTO_METHOD
                and lr_key(r["lr"]) == lr_key(get_method(AUTO_METHOD).default_lr)]
        out.append({
            "width": w, "workload": wrows[0]["workload"], "num_params": int(pred["num_params"]),
            "predicted_lr": pred["rule"], "mup_lr": pred["mup"], "tuned_lr": tuned,
            "ratio": pred["rule"] / tuned if oracle else math.nan,
            "auto_q": _median_q(auto), "auto_runs": len(auto),
            "oracle_q": oracle["test"] if oracle else math.nan,
            "oracle_runs": oracle["n_runs"] if oracle else 0,
        })
    return out


def _fmt(v: float, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else \
        f"{v:.{digits}g}"


def width_markdown(table: list[dict[str, Any]], db_path: str = "") -> str:
    lines = ["# Width study: predicted vs tuned learning rate", ""]
    if db_path:
        lines += [f"Database: `{db_path}`; rebuild with `cadence bench width-report --db "
                  f"{db_path}`.", ""]
    if not table:
        return "\n".join(lines + ["No `mnist1d-mlp-w<width>` runs in the database: run "
                                  "`cadence bench --suite width` first.", ""])
    lines += ["| width | params | predicted lr | μP lr (median fan-in) | tuned oracle lr | ratio "
              "| auto Q | oracle Q | runs (auto / oracle) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        lines.append(
            f"| {t['width']} | {t['num_params']:,} | {_fmt(t['predicted_lr'])} | "
            f"{_fmt(t['mup_lr'])} | {_fmt(t['tuned_lr'])} | {_fmt(t['ratio'])} | "
            f"{_fmt(t['auto_q'], 4)} | {_fmt(t['oracle_q'], 4)} | "
            f"{t['auto_runs']} / {t['oracle_runs']} |")
    lines += ["", "predicted lr: the scale rule as `auto` applies it (0.5 / fan_in, fan_in = "
              "sqrt(params / 12)); ratio = predicted / tuned; Q = median test accuracy over "
              "seeds (auto at its default start 1e-3, oracle at its tuned lr).", "",
              "![predicted vs tuned lr](width_lr.png)", ""]
    return "\n".join(lines)


def width_plot(table: list[dict[str, Any]], path: str | Path) -> Path:
    """Predicted (rule and μP) and tuned oracle lr per width, log-log axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = [t["width"] for t in table]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(widths, [t["predicted_lr"] for t in table], "o-", label="predicted (scale rule)")
    ax.plot(widths, [t["mup_lr"] for t in table], "s:", label="μP, median fan-in")
    tuned = [(t["width"], t["tuned_lr"]) for t in table if math.isfinite(t["tuned_lr"])]
    if tuned:
        ax.plot(*zip(*tuned, strict=True), "D-", color="k", label="tuned oracle")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden width")
    ax.set_ylabel("peak learning rate (AdamW)")
    ax.set_title("mnist1d-mlp: predicted vs tuned lr")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_width_report(db: ResultsDB | str | Path, out_dir: str | Path) -> Path:
    """Write ``width.md`` (the table) and ``width_lr.png`` into ``out_dir``."""
    handle = db if isinstance(db, ResultsDB) else ResultsDB(db)
    try:
        table = width_table(handle.rows())
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md = out / "width.md"
        md.write_text(width_markdown(table, handle.path))
        if table:
            width_plot(table, out / "width_lr.png")
        return md
    finally:
        if handle is not db:
            handle.close()


__all__ = ["predicted_lr", "width_markdown", "width_of", "width_plot", "width_table",
           "write_width_report"]
