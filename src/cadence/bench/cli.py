"""``cadence bench``: run a suite, build the report, or measure per-step overhead.

    cadence bench [run] --suite quick [--workloads a b] [--methods x y] [--db PATH] [--workers N]
                        [--executor local|ray] [--ray-address ADDR]
    cadence bench report [--db PATH] [--out DIR]
    cadence bench width-report [--db PATH] [--out DIR]
    cadence bench overhead [--repeats N] [--steps N] [--presets p q]
    cadence bench gpu [--repeats N] [--steps N] [--train-steps N] [--out FILE]
    cadence bench list

``cadence bench ACTION --help`` describes one action.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_DB = "bench_results.sqlite"
DEFAULT_OUT = "bench_report"


def register(subparsers: Any) -> None:
    """Add the ``bench`` parser, with one sub-parser (and ``--help``) per action."""
    p = subparsers.add_parser(
        "bench", help="benchmark cadence against the peers and the oracle",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _run_options(p, argparse.SUPPRESS)
    p.set_defaults(func=main, action="run", suite="quick", workloads=None, methods=None,
                   seeds=None, db=DEFAULT_DB, workers=None, out=DEFAULT_OUT, executor="local",
                   ray_address=None)
    actions = p.add_subparsers(dest="action", metavar="ACTION",
                               title="actions (default: run)")
    run = actions.add_parser(
        "run", help="run a suite (the default action)",
        description="Run a suite of workloads x methods x seeds x learning rates and store "
        "one row per run in the results database.")
    _run_options(run, argparse.SUPPRESS)
    report = actions.add_parser(
        "report", help="build report.md and plots from a results database",
        description="Build report.md and PNG plots from an existing results database.")
    report.add_argument("--db", default=argparse.SUPPRESS,
                        help=f"results database; must exist (default {DEFAULT_DB})")
    report.add_argument("--out", default=argparse.SUPPRESS,
                        help=f"report folder (default {DEFAULT_OUT})")
    width = actions.add_parser(
        "width-report", help="the width study's table and plot from a results database",
        description="Predicted (scale rule) vs tuned oracle lr per width, with auto's and the "
        "oracle's quality: width.md and width_lr.png from the runs of --suite width.")
    width.add_argument("--db", default=argparse.SUPPRESS,
                       help=f"results database; must exist (default {DEFAULT_DB})")
    width.add_argument("--out", default=argparse.SUPPRESS,
                       help=f"report folder (default {DEFAULT_OUT})")
    overhead = actions.add_parser(
        "overhead", help="measure the per-step cost of cadence presets",
        description="Time each preset's step against the bare optimizer step, in "
        "interleaved A/B repeats.")
    overhead.add_argument("--repeats", type=int, default=7, help="A/B repeats (default 7)")
    overhead.add_argument("--steps", type=int, default=30,
                          help="timed steps per repeat (default 30)")
    overhead.add_argument("--presets", nargs="*", default=None,
                          help="cadence presets (default: the built-in list)")
    gpu = actions.add_parser(
        "gpu", help="overhead and a short suite on a CUDA GPU (says so when none is present)",
        description="On a CUDA GPU: the overhead bench and a short suite of arms (training "
        "loss, ms/step, peak memory). Without one: prints that no GPU is present, exits 0.")
    gpu.add_argument("--repeats", type=int, default=7, help="overhead A/B repeats (default 7)")
    gpu.add_argument("--steps", type=int, default=30,
                     help="timed overhead steps per repeat (default 30)")
    gpu.add_argument("--train-steps", type=int, default=300,
                     help="updates per run of the short suite (default 300)")
    gpu.add_argument("--block", type=int, default=10,
                     help="updates per timed block in the pipelined overhead (default 10)")
    gpu.add_argument("--presets", nargs="*", default=None,
                     help="presets for the overhead bench (default: cosine auto clara plateau)")
    gpu.add_argument("--gpu-workloads", nargs="*", default=None, dest="gpu_workloads",
                     help="workloads (default: mnist1d-mlp-w1024 charlm)")
    gpu.add_argument("--gpu-methods", nargs="*", default=None, dest="gpu_methods",
                     help="arms of the short suite (default: adamw-cosine cadence-cosine "
                     "cadence-auto cadence-onecycle)")
    gpu.add_argument("--out", default=None, dest="gpu_out",
                     help="also write the Markdown tables to this file")
    actions.add_parser("list", help="list workloads, methods and suites",
                       description="List the workloads, methods (and why one is "
                       "unavailable) and suites.")


def _run_options(p: argparse.ArgumentParser, default: Any) -> None:
    """The options of ``run``; their defaults are set once, on the ``bench`` parser."""
    p.add_argument("--suite", default=default, help="quick | standard | full (default quick)")
    p.add_argument("--workloads", nargs="*", default=default,
                   help="limit to workloads (or groups: width, stress)")
    p.add_argument("--methods", nargs="*", default=default,
                   help="limit to methods (or groups: peers, cadence, controllers, ablations)")
    p.add_argument("--seeds", nargs="*", type=int, default=default,
                   help="run these seeds instead of each plan's own (e.g. --seeds 0 1 2)")
    p.add_argument("--db", default=default, help=f"results database (default {DEFAULT_DB})")
    p.add_argument("--workers", type=int, default=default,
                   help="processes (default: all cores); with --executor ray and no "
                   "--ray-address, the CPUs of the local Ray instance")
    p.add_argument("--executor", choices=("local", "ray"), default=default,
                   help="where runs execute: local process pool (default) or Ray tasks "
                   "(extra [ray]); rows and resume are the same")
    p.add_argument("--ray-address", default=default,
                   help="Ray cluster to join (e.g. auto, ray://head:10001); default: start "
                   "a local Ray instance")
    p.add_argument("--out", default=default,
                   help=f"report folder named in the hint printed (default {DEFAULT_OUT})")


def main(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            return _list()
        if args.action in ("report", "width-report"):
            if args.db != ":memory:" and not Path(args.db).is_file():
                raise ValueError(f"--db {args.db!r} does not exist; run a suite first "
                                 f"(cadence bench --db {args.db}) or name an existing database")
            if args.action == "report":
                from .report import write_report

                path = write_report(args.db, args.out)
            else:
                from .width import write_width_report

                path = write_width_report(args.db, args.out)
            print(f"report written to {path}")
            return 0
        if args.action == "gpu":
            from .gpu import GPU_METHODS, GPU_PRESETS, GPU_WORKLOADS, run_gpu

            for name in ("repeats", "steps", "block"):
                if getattr(args, name) < 1:
                    raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
            if args.train_steps < 10:
                raise ValueError(f"--train-steps must be >= 10, got {args.train_steps}")
            return run_gpu(
                presets=args.presets or GPU_PRESETS, workloads=args.gpu_workloads or GPU_WORKLOADS,
                methods=args.gpu_methods or GPU_METHODS, repeats=args.repeats, steps=args.steps,
                train_steps=args.train_steps, block=args.block, out=args.gpu_out,
            )
        if args.action == "overhead":
            from .overhead import PRESETS, format_overhead, measure_overhead

            for name in ("repeats", "steps"):
                if getattr(args, name) < 1:
                    raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
            results = measure_overhead(
                presets=args.presets or PRESETS, repeats=args.repeats, steps=args.steps,
            )
            print(format_overhead(results))
            return 0
        if args.workers is not None and args.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {args.workers}")
        return _run(args)
    except (ValueError, ImportError) as err:  # bad arguments, or a missing extra
        print(f"cadence bench: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from .db import ResultsDB
    from .suites import get_suite, run_suite

    suite = get_suite(args.suite)
    if args.seeds:
        if any(seed < 0 for seed in args.seeds):
            raise ValueError(f"--seeds must be >= 0, got {args.seeds}")
        suite = suite.with_seeds(args.seeds)
    with ResultsDB(args.db) as db:
        counts = run_suite(suite, db, workloads=args.workloads, methods=args.methods,
                           workers=args.workers, executor=args.executor,
                           ray_address=args.ray_address)
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
