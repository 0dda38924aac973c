"""The ``cadence`` command line: ``cadence demo``, ``cadence bench``, ``cadence report``, …

Each sub-command lives in its own module, which exposes ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from cadence import __version__, demo
from cadence.bench import cli as bench_cli
from cadence.learn import cli as learn_cli
from cadence.report import cli as report_cli
from cadence.schedules import cli as schedules_cli

#: sub-command modules, each with ``register(subparsers) -> None`` that adds its parser
#: and sets ``func`` (called with the parsed namespace, returns an exit code).
_COMMAND_MODULES = (demo, bench_cli, report_cli, schedules_cli, learn_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadence", description="Adaptive training regimes for PyTorch."
    )
    parser.add_argument("--version", action="version",
                        version=f"cadence {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
