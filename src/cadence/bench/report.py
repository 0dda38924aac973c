"""Tables and plots from the results database alone (no workload or method code).

``write_report(db, out_dir)`` writes ``report.md`` plus PNGs: one learning-rate
sensitivity plot per workload and a performance profile. Definitions (BENCHMARK.md):

* quality ``Q``: final primary metric on the test split, median over seeds; diverged
  runs score worst (accuracy 0, loss ∞). Ratio to the oracle ``Q/Q†`` for accuracy,
  ``Q†/Q`` for losses, so > 1 is always better. 95 % CI by bootstrap over seeds.
* tuned: each method at its own best rate, picked on the selection split like the oracle.
* robustness width: decades of the contiguous rate interval around a method's best point
  whose ``Q`` is within 2 % (accuracy) or 1 % (loss) of ``Q†``; each grid point stands for
  the cell reaching halfway to its neighbours.
* steps to target: first evaluation whose selection metric reaches the oracle's median
  final selection metric (the lower/upper middle value for an even number of seeds, so
  the oracle reaches it on at least half of them; ∞ if never). Performance profile over
  (workload, seed) problems with each method at its tuned rate; score ``B`` = area under
  ρ(τ) on [1, 4] / 3.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from .db import ResultsDB
from .oracle import ORACLE_METHOD, lr_key, median_by_lr, primary_of, score, select_oracle

R_MAX = 4.0
BOOTSTRAP = 1000


def _worst_to_value(v: float, higher: bool) -> float:
    """Diverged accuracy counts as 0; diverged loss stays +∞."""
    return 0.0 if (higher and v == -math.inf) else v


def ratio(q: float, oracle: float, higher: bool) -> float:
    """Quality relative to the oracle, > 1 better, 0 for a diverged (worst) value."""
    if higher:
        return max(0.0, q) / oracle if oracle > 0 else math.nan
    if not math.isfinite(q):
        return 0.0
    if q <= 0:  # a loss of exactly 0 (suboptimality at the optimum)
        return math.inf if oracle > 0 else math.nan
    return oracle / q


def bootstrap_ci(
    values: list[float], stat: Any = statistics.median, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of ``stat`` over ``values`` (fixed RNG seed)."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (math.nan, math.nan)
    rng = random.Random(seed)
    draws = sorted(stat([rng.choice(values) for _ in values]) for _ in range(BOOTSTRAP))
    return draws[int(0.025 * BOOTSTRAP)], draws[int(0.975 * BOOTSTRAP) - 1]


def steps_to_target(row: dict[str, Any], target: float) -> tuple[float, float]:
    """(steps, training seconds) to first reach ``target`` on the selection split."""
    key, higher = primary_of(row)
    if row.get("status") != "ok":
        return math.inf, math.inf
    floor = row["config"].get("metric_floor")
    for p in row.get("curve") or []:
        v = p.get(f"selection_{key}")
        if v is not None and floor is not None:
            v = max(v, floor)
        if v is not None and math.isfinite(v) and (v >= target if higher else v <= target):
            return float(p["step"]), float(p.get("time") or 0.0)
    return math.inf, math.inf


def width_decades(points: dict[float, float], oracle: float, higher: bool) -> float:
    """Robustness width (see module doc) from ``{lr: test quality}``."""
    lrs = sorted(points)
    if not lrs:
        return 0.0
    ok = [
        math.isfinite(points[lr]) and (
            points[lr] >= (1 - 0.02) * oracle if higher else points[lr] <= (1 + 0.01) * oracle
        ) for lr in lrs
    ]
    best = (max if higher else min)(range(len(lrs)), key=lambda i: points[lrs[i]])
    if not ok[best]:
        return 0.0
    lo = hi = best
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(lrs) - 1 and ok[hi + 1]:
        hi += 1
    logs = [math.log10(lr) for lr in lrs]
    if len(logs) == 1:
        return 0.5
    left = (logs[lo] - logs[lo - 1]) / 2 if lo > 0 else (logs[1] - logs[0]) / 2
    right = (logs[hi + 1] - logs[hi]) / 2 if hi < len(logs) - 1 else (logs[-1] - logs[-2]) / 2
    return logs[hi] - logs[lo] + left + right


def _fmt(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if v in (math.inf, -math.inf):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def by_budget(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows by workload and budget: a workload's most-run number of steps keeps its name,
    other budgets become ``"<workload>@<steps>"`` (the long suite's 1,600-step charlm is
    not the standard 400-step one, and mixing them would pick the oracle across both)."""
    by_key: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("config"):
            by_key[(r["workload"], int(r.get("steps") or 0))].append(r)
    budgets: dict[str, list[int]] = defaultdict(list)
    for wl, steps in by_key:
        budgets[wl].append(steps)
    # a workload's main budget: the one with most runs, then the shorter one
    main = {wl: max(ss, key=lambda s: (len(by_key[(wl, s)]), -s)) for wl, ss in budgets.items()}
    return {wl if steps == main[wl] else f"{wl}@{steps}": rs
            for (wl, steps), rs in by_key.items()}


def analyse(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the report shows, as plain data (also handy for tests and notebooks)."""
    by_wl = by_budget(rows)
    out: dict[str, Any] = {}
    for wl, wrows in sorted(by_wl.items()):
        key, higher = primary_of(wrows[0])
        oracle = select_oracle(wrows)
        methods: dict[str, Any] = {}
        by_m: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in wrows:
            if r["status"] in ("ok", "diverged"):
                by_m[r["method"]].append(r)
        for m, mrows in sorted(by_m.items()):
            test = {lr: _worst_to_value(v, higher) for lr, v in median_by_lr(mrows, "test").items()}
            sel = median_by_lr(mrows, "selection")
            finite_sel = {lr: v for lr, v in sel.items() if math.isfinite(v)}
            pick = max if higher else min
            tuned = pick(finite_sel, key=finite_sel.__getitem__) if finite_sel else None
            info: dict[str, Any] = {
                "primary": key, "higher": higher, "test_by_lr": test, "tuned_lr": tuned,
                "runs": len(mrows), "diverged": sum(r["status"] == "diverged" for r in mrows),
                "default_lr": None,
            }
            cfgs = [r["config"] for r in mrows]
            info["lr_meaning"] = cfgs[0].get("lr_meaning", "learning rate")
            if tuned is not None:
                trows = [r for r in mrows if lr_key(r["lr"]) == tuned]
                vals = [_worst_to_value(score(r, "test"), higher) for r in trows]
                info["tuned_q"] = statistics.median(vals)
                info["tuned_vals"] = vals
                found = [(r.get("final_metrics") or {}).get("train_loss") for r in trows]
                tl = [v for v in found if v is not None]
                info["train_loss"] = statistics.median(tl) if tl else math.nan
                info["tuned_rows"] = trows
            if oracle:
                ref = oracle["test"]
                info["width"] = width_decades(test, ref, higher)
                if tuned is not None:
                    rs = [ratio(v, ref, higher) for v in info["tuned_vals"]]
                    info["ratio"] = ratio(info["tuned_q"], ref, higher)
                    info["ratio_ci"] = bootstrap_ci(rs)
                    stt = [steps_to_target(r, oracle["target"]) for r in info["tuned_rows"]]
                    info["steps_to_target"] = statistics.median([s for s, _ in stt])
                    info["time_to_target"] = statistics.median([t for _, t in stt])
                    info["stt_by_seed"] = {
                        r["seed"]: s for r, (s, _) in zip(info["tuned_rows"], stt, strict=True)
                    }
            methods[m] = info
        errors = sum(r["status"] == "error" for r in wrows)
        out[wl] = {"primary": key, "higher": higher, "oracle": oracle, "methods": methods,
                   "errors": errors, "task": wrows[0]["config"].get("task", "")}
    return out


def performance_profile(analysis: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """ρ_s(τ) at τ = 1, 2, 4, the score B_s and the geometric-mean speed-up vs the oracle
    (over problems both reach), over (workload, seed) problems."""
    times: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    for wl, a in analysis.items():
        for m, info in a["methods"].items():
            for seed, s in (info.get("stt_by_seed") or {}).items():
                times[m][(wl, seed)] = s
    problems = sorted({p for t in times.values() for p in t})
    if not problems:
        return {}
    best = {p: min(t.get(p, math.inf) for t in times.values()) for p in problems}
    out: dict[str, dict[str, Any]] = {}  # floats, and the curve as lists
    taus = [1 + 3 * i / 300 for i in range(301)]
    for m, t in times.items():
        r = [t.get(p, math.inf) / best[p] if math.isfinite(best[p]) and best[p] > 0 else
             (1.0 if t.get(p, math.inf) == best[p] else math.inf) for p in problems]
        rho = [sum(x <= tau for x in r) / len(problems) for tau in taus]
        area = sum((rho[i] + rho[i + 1]) / 2 * (taus[i + 1] - taus[i]) for i in range(300))
        speed = [times[ORACLE_METHOD][p] / t[p] for p in problems
                 if ORACLE_METHOD in times and math.isfinite(times[ORACLE_METHOD].get(p, math.inf))
                 and math.isfinite(t.get(p, math.inf)) and t[p] > 0]
        out[m] = {
            "rho1": rho[0], "rho2": rho[100], "rho4": rho[-1], "B": area / (R_MAX - 1),
            "speedup": math.exp(sum(map(math.log, speed)) / len(speed)) if speed else math.nan,
            "curve": rho, "taus": taus,
        }
    return out


def markdown(analysis: dict[str, Any], rows: list[dict[str, Any]], db_path: str) -> str:
    lines = ["# cadence benchmark report", ""]
    machines = sorted({r["machine"].get("platform", "?") + f", {r['machine'].get('cpu_count')} CPUs"
                       for r in rows if r.get("machine")})
    versions = sorted({r.get("cadence_version") or "?" for r in rows})
    created = sorted(r.get("created") or "" for r in rows)
    lines += [f"- database: `{db_path}` ({len(rows)} runs)",
              f"- machine: {'; '.join(machines) or '—'}",
              f"- cadence version: {', '.join(versions)}",
              f"- runs from {created[0] if created else '—'} to {created[-1] if created else '—'}",
              "- rebuild: `cadence bench report --db " + db_path + "`", ""]
    lines += ["## Quality vs the oracle", "",
              "Each method at its own best rate (chosen on the selection split); Q = median test "
              "metric over seeds; ratio > 1 beats the oracle (losses inverted); 95% bootstrap CI "
              "over seeds. Width: decades of initial rate within 2% (accuracy) / 1% (loss) of the "
              "oracle. Steps: median steps to the oracle's selection target.", ""]
    for wl, a in analysis.items():
        o = a["oracle"]
        head = f"### {wl} ({a['primary']}, {'higher' if a['higher'] else 'lower'} is better)"
        lines += [head, ""]
        if o:
            lines += [f"Oracle (adamw-cosine): lr {_fmt(o['lr'])}, test {a['primary']} "
                      f"{_fmt(o['test'], 4)}, selection target {_fmt(o['target'], 4)}, "
                      f"tuning cost {o['n_runs']} runs.", ""]
        else:
            lines += ["No finished oracle (adamw-cosine) runs: ratios unavailable.", ""]
        trs = []
        for m, info in a["methods"].items():
            ci = info.get("ratio_ci", (math.nan, math.nan))
            trs.append([
                m, _fmt(info.get("tuned_lr")), _fmt(info.get("tuned_q", math.nan), 4),
                _fmt(info.get("ratio", math.nan), 4), f"[{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]",
                _fmt(info.get("width", math.nan), 2), _fmt(info.get("steps_to_target", math.nan)),
                _fmt(info.get("train_loss", math.nan)), f"{info['diverged']}/{info['runs']}",
            ])
        lines += _table(["method", "tuned lr", "Q", "ratio", "95% CI", "width (dec)",
                         "steps to target", "train loss", "diverged"], trs)
        if a["errors"]:
            lines += ["", f"{a['errors']} run(s) ended in an error (see the `error` column)."]
        lines += ["", f"![sensitivity](sensitivity_{wl}.png)", ""]
    lines += ["## Learning-rate sensitivity (median test metric; `div` = diverged)", ""]
    for wl, a in analysis.items():
        lrs = sorted({lr for info in a["methods"].values() for lr in info["test_by_lr"]})
        trs = []
        for m, info in a["methods"].items():
            cells = []
            for lr in lrs:
                v = info["test_by_lr"].get(lr)
                bad = v is None
                cells.append("" if bad else ("div" if v in (0.0, math.inf) and info["diverged"]
                                             else _fmt(v, 3)))
            trs.append([m, *cells])
        lines += [f"### {wl}", ""] + _table(["method", *[_fmt(lr, 2) for lr in lrs]], trs) + [""]
    prof = performance_profile(analysis)
    if prof:
        lines += ["## Performance profile (steps to target, tuned rates, r_max = 4)", ""]
        trs = [[m, _fmt(p["B"], 3), _fmt(p["rho1"], 2), _fmt(p["rho2"], 2), _fmt(p["rho4"], 2),
                _fmt(p["speedup"], 3)] for m, p in sorted(prof.items(), key=lambda kv: -kv[1]["B"])]
        lines += _table(["method", "B", "ρ(1)", "ρ(2)", "ρ(4)", "geo-mean speed-up vs oracle"], trs)
        lines += ["", "![performance profile](performance_profile.png)", ""]
    lines += ["## Divergences (diverged / runs, whole sweep)", ""]
    all_m = sorted({m for a in analysis.values() for m in a["methods"]})
    trs = []
    for m in all_m:
        cells = []
        for a in analysis.values():
            info = a["methods"].get(m)
            cells.append(f"{info['diverged']}/{info['runs']}" if info else "")
        trs.append([m, *cells])
    lines += _table(["method", *analysis], trs) + [""]
    stress = [r for r in rows if r["workload"].startswith("stress-") and r.get("final_metrics")]
    if stress:
        lines += ["## Stress", "", "NaN entries in the final weights (must be 0) and steps to "
                  "recover the pre-disturbance selection metric (median).", ""]
        agg: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in stress:
            agg[(r["workload"], r["method"])].append(r["final_metrics"])
        trs = []
        for (wl, m), fms in sorted(agg.items()):
            nan = sum((f.get("nan_in_weights") or 0) > 0 for f in fms)
            found = [f.get("recovery_steps") for f in fms]
            rec = [math.inf if v is None else v for v in found]
            trs.append([wl, m, f"{nan}/{len(fms)}", _fmt(statistics.median(rec))])
        lines += _table(["workload", "method", "runs with NaN weights", "recovery steps"], trs)
    return "\n".join(lines) + "\n"


def plots(analysis: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for wl, a in analysis.items():
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for m, info in a["methods"].items():
            pts = sorted(info["test_by_lr"].items())
            xs = [lr for lr, _ in pts]
            ys = [v if math.isfinite(v) else math.nan for _, v in pts]
            ax.plot(xs, ys, marker="o", ms=3, label=m)
        if a["oracle"]:
            ax.axhline(a["oracle"]["test"], color="k", ls="--", lw=1, label="oracle")
        ax.set_xscale("log")
        if not a["higher"]:
            ax.set_yscale("log")
        ax.set_xlabel("initial learning rate (swept value)")
        ax.set_ylabel(f"final test {a['primary']}")
        ax.set_title(f"{wl}: learning-rate sensitivity")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out / f"sensitivity_{wl}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    prof = performance_profile(analysis)
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, p in sorted(prof.items()):
        ax.step(p["taus"], p["curve"], where="post", label=m)
    ax.set_xlabel("τ (steps to target / best)")
    ax.set_ylabel("fraction of problems ρ(τ)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("performance profile")
    if prof:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "performance_profile.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def write_report(db: ResultsDB | str | Path, out_dir: str | Path) -> Path:
    """Write ``report.md`` and the PNGs into ``out_dir``; returns the Markdown path."""
    own = not isinstance(db, ResultsDB)
    handle = db if isinstance(db, ResultsDB) else ResultsDB(db)
    try:
        rows = handle.rows()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        analysis = analyse(rows)
        md = out / "report.md"
        md.write_text(markdown(analysis, rows, handle.path))
        plots(analysis, out)
        return md
    finally:
        if own:
            handle.close()
