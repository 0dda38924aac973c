"""``cadence learn``: train the learned controller's policy with PPO (extra ``[learn]``).

    cadence learn --workloads mnist1d-mlp,digits-cnn --timesteps 24000 --out runs/learn
    cadence learn ... --export src/cadence/controllers/learned_policy.json
    cadence learn evaluate --db learned.sqlite --source docs/bench/results.sqlite
    cadence learn report --db learned.sqlite

Training resumes from ``OUT/ppo_latest.zip`` when it exists. ``evaluate`` runs the
``standard`` bench suite for cadence-learned and cadence-auto (plus extra seeds at the
default start) beside the oracle's committed runs; ``report`` prints the transfer table.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from typing import Any

DEFAULT_WORKLOADS = "mnist1d-mlp,digits-cnn"


def register(subparsers: Any) -> None:
    """Add the ``learn`` parser to the top-level ``cadence`` command."""
    p = subparsers.add_parser(
        "learn", help="train the learned lr controller with PPO (extra [learn])",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", nargs="?", default="train",
                   choices=("train", "evaluate", "report"))
    p.add_argument("--workloads", default=DEFAULT_WORKLOADS,
                   help=f"bench workloads to train on, comma-separated (default "
                        f"{DEFAULT_WORKLOADS})")
    p.add_argument("--timesteps", type=int, default=24000,
                   help="PPO timesteps (= decisions) in total (default 24000)")
    p.add_argument("--steps", default="600",
                   help="training steps per episode: N, or name=N,name=N (default 600)")
    p.add_argument("--seed", type=int, default=0, help="seed of PPO and the episodes")
    p.add_argument("--envs", type=int, default=2, help="environment processes (default 2)")
    p.add_argument("--out", default="runs/learn", help="checkpoints and logs folder")
    p.add_argument("--checkpoint-every", type=int, default=2000, help="timesteps")
    p.add_argument("--export", default=None, help="also copy the policy JSON to this path")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--db", default="learned_eval.sqlite", help="evaluate/report: results DB")
    p.add_argument("--source", default="docs/bench/results.sqlite",
                   help="evaluate: database holding the oracle's runs")
    p.add_argument("--seeds", default="2,3,4",
                   help="evaluate: extra seeds at the default start (default 2,3,4)")
    p.add_argument("--workers", type=int, default=None, help="evaluate: processes")
    p.set_defaults(func=main)


def parse_steps(text: str, workloads: list[str]) -> int | dict[str, int]:
    """``"600"`` → 600; ``"a=600,b=300"`` → per workload (each must be named)."""
    if "=" not in text:
        return int(text)
    out = {}
    for item in text.split(","):
        name, _, n = item.partition("=")
        out[name.strip()] = int(n)
    missing = [w for w in workloads if w not in out]
    if missing:
        raise ValueError(f"--steps names no budget for {missing}")
    return out


def main(args: argparse.Namespace) -> int:
    if args.action in ("evaluate", "report"):
        return _evaluate(args)
    try:
        from cadence.learn.ppo import train
    except ImportError as err:
        print(f"cadence learn needs the [learn] extra (gymnasium, stable-baselines3): {err}",
              file=sys.stderr)
        return 2
    from cadence.bench.workloads import WORKLOADS

    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown or not workloads:
        print(f"cadence learn: unknown workloads {unknown}; known: {sorted(WORKLOADS)}",
              file=sys.stderr)
        return 2
    try:
        steps = parse_steps(args.steps, workloads)
    except ValueError as err:
        print(f"cadence learn: {err}", file=sys.stderr)
        return 2
    command = "cadence learn " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    t0 = time.time()
    path = train(workloads, args.timesteps, args.out, steps=steps, seed=args.seed,
                 envs=args.envs, checkpoint_every=args.checkpoint_every,
                 progress=not args.no_progress, command=command)
    print(f"trained in {time.time() - t0:.0f} s; policy: {path}")
    if args.export:
        shutil.copyfile(path, args.export)
        print(f"exported to {args.export}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from cadence.controllers.learned import load_policy
    from cadence.learn.evaluate import evaluate, transfer_table

    if args.action == "evaluate":
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        counts = evaluate(args.db, args.source, extra_seeds=seeds, workers=args.workers)
        print(", ".join(f"{k} {v}" for k, v in counts.items() if v))
    trained_on = load_policy()[1].get("trained_on", [])
    print(transfer_table(args.db, trained_on))
    return 0
