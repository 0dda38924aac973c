"""``cadence bench``: run a suite, build the report, or measure per-step overhead.

    cadence bench --suite quick [--workloads a,b] [--methods x,y] [--db PATH] [--workers N]
    cadence bench report [--db PATH] [--out DIR]
    cadence bench overhead [--repeats N] [--steps N]
    cadence bench list
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEFAULT_DB = "bench_results.sqlite"
DEFAULT_OUT = "bench_report"


def register(subparsers: Any) -> None:
    """Add the ``bench`` parser to the top-level ``cadence`` command."""
    p = subparsers.add_parser(
        "bench", help="benchmark cadence against the peers and the oracle",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = ("run", "report", "overhead", "list")
    p.add_argument("action", nargs="?", default="run", choices=actions)
    p.add_argument("--suite", default="quick", help="quick | standard | full (default quick)")
    p.add_argument("--workloads", nargs="*", help="limit to workloads (or groups: width, stress)")
    p.add_argument("--methods", nargs="*", help="limit to methods (or groups: peers, cadence)")
    p.add_argument("--db", default=DEFAULT_DB, help=f"results database (default {DEFAULT_DB})")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    p.add_argument("--repeats", type=int, default=7, help="overhead: A/B repeats")
    p.add_argument("--steps", type=int, default=30, help="overhead: timed steps per repeat")
    p.add_argument("--presets", nargs="*", default=None, help="overhead: cadence presets")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            return _list()
        if args.action == "report":
            from .report import write_report

            path = write_report(args.db, args.out)
            print(f"report written to {path}")
            return 0
        if args.action == "overhead":
            from .overhead import PRESETS, format_overhead, measure_overhead

            results = measure_overhead(
                presets=args.presets or PRESETS, repeats=args.repeats, steps=args.steps,
            )
            print(format_overhead(results))
            return 0
        return _run(args)
    except ValueError as err:
        print(f"cadence bench: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from .db import ResultsDB
    from .suites import get_suite, run_suite

    suite = get_suite(args.suite)
    with ResultsDB(args.db) as db:
        counts = run_suite(suite, db, workloads=args.workloads, methods=args.methods,
                           workers=args.workers)
    summary = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    print(f"suite {suite.name}: {summary or 'nothing to do'}; results in {args.db}")
    print(f"next: cadence bench report --db {args.db} --out {args.out}")
    return 1 if counts.get("error") else 0


def _list() -> int:
    from .methods import METHODS
    from .suites import SUITES
    from .workloads import get_workload, workload_names

    print("workloads:")
    for name in workload_names():
        w = get_workload(name)
        print(f"  {name:18s} {w.steps:6d} steps  {w.description}")
    print("methods:")
    for name, m in METHODS.items():
        note = m.missing()
        print(f"  {name:18s} {m.description}" + (f"  [{note}]" if note else ""))
    print("suites:")
    for name, s in SUITES.items():
        print(f"  {name:18s} {s.description}")
    return 0
