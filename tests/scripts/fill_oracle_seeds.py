"""Give every oracle grid point of a results database all the seeds it has anywhere.

Two sweeps merged into one database (e.g. seeds 0 – 2 of the main table and seeds 3 – 9
run later) can refine the oracle's grid at different points, and a point that lacks some
seeds would be compared on fewer of them. This runs the missing (point, seed) pairs, at
the standard suite's budget of each workload, into the same database (resumable):

    python tests/scripts/fill_oracle_seeds.py docs/bench/seeds10.sqlite --workers 2
"""

from __future__ import annotations

import argparse

from cadence.bench.db import ResultsDB
from cadence.bench.oracle import ORACLE_METHOD, lr_key
from cadence.bench.runner import RunSpec, run_specs
from cadence.bench.suites import get_suite
from cadence.bench.workloads import get_workload


def missing(db: ResultsDB) -> list[RunSpec]:
    """The oracle runs a point lacks, for each workload at its standard budget."""
    specs = []
    for plan in get_suite("standard").plans:
        wl = get_workload(plan.workload)
        steps = plan.steps or wl.steps
        rows = [r for r in db.rows(plan.workload, ORACLE_METHOD) if r["steps"] == steps]
        seeds = {r["seed"] for r in rows}
        have: dict[float, set[int]] = {}
        for r in rows:
            have.setdefault(lr_key(r["lr"]), set()).add(r["seed"])
        every = max(1, min(wl.eval_every, steps // 10))
        specs += [RunSpec(plan.workload, ORACLE_METHOD, lr, seed, steps, every)
                  for lr, got in sorted(have.items()) for seed in sorted(seeds - got)]
    return specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    db = ResultsDB(a.db)
    specs = missing(db)
    print(f"{len(specs)} oracle runs missing")
    run_specs(specs, db, workers=a.workers)


if __name__ == "__main__":
    main()
