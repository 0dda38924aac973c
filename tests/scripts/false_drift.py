"""Count drift responses on clean runs (no disturbance): re-warm episodes, drift checks and
their outcomes, guard-confirmed shifts. Every re-warm on a clean run is a false alarm.

    .venv/bin/python tests/scripts/false_drift.py --steps 1500 --seeds 0 1 \
        --workloads mnist1d-mlp digits-cnn logreg

Runs the bench's ``cadence-auto`` through ``run_one`` (one thread, serially) and prints one
line per run and the totals.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import cadence
from cadence.bench.runner import RunSpec, run_one


def episodes(events: list[Any]) -> int:
    """Re-warm episodes: runs of drift_response events less than 200 steps apart."""
    steps = [e.step for e in events if e.source.startswith("drift_response")]
    return sum(1 for i, s in enumerate(steps) if i == 0 or s - steps[i - 1] > 200)


def count(events: list[Any]) -> dict[str, int]:
    return {
        "rewarms": episodes(events),
        "checks": sum(e.kind == "rollback" and e.reason.startswith("drift check")
                      for e in events),
        "no_shift": sum(e.reason.startswith("drift check ended") for e in events),
        "lr_cuts": sum(e.reason.startswith("drift check: no data shift") for e in events),
        "shifts": sum(e.kind == "drift" and e.source == "guard" for e in events),
        "rollbacks": sum(e.kind == "rollback" and not e.reason.startswith("drift check")
                         for e in events),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", nargs="+", default=["mnist1d-mlp", "digits-cnn", "logreg"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--method", default="cadence-auto")
    ap.add_argument("--no-check", action="store_true",
                    help="turn the guard's drift check off (to measure what it changes)")
    args = ap.parse_args()
    if args.no_check:
        from cadence.regime.guard import Guard
        guard_init = Guard.__init__

        def no_check(self: Guard, *a: Any, **k: Any) -> None:
            guard_init(self, *a, **{"drift_check_steps": 0, **k})

        Guard.__init__ = no_check  # type: ignore[method-assign]
    made: list[cadence.Regime] = []
    init = cadence.Regime.__init__

    def spy(self: cadence.Regime, *a: Any, **k: Any) -> None:
        init(self, *a, **k)
        made.append(self)

    cadence.Regime.__init__ = spy  # type: ignore[method-assign]
    warnings.simplefilter("ignore")
    total: dict[str, int] = {}
    for wl in args.workloads:
        for seed in args.seeds:
            made.clear()
            t0 = time.perf_counter()
            row = run_one(RunSpec(wl, args.method, 1e-3, seed, args.steps,
                                  max(args.steps // 10, 1)))
            c = count(made[-1].events) if made else {}
            for k, v in c.items():
                total[k] = total.get(k, 0) + v
            test = {k: round(v, 4) for k, v in (row.get("final_metrics") or {}).items()
                    if k.startswith("test_")}
            print(f"{wl} seed {seed}: {row['status']} {c} {test} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print("total", total)


if __name__ == "__main__":
    main()
