"""The ``cadence`` command line: ``cadence demo``, ``cadence bench``, ``cadence report``, …

Each sub-command lives in its own module, which exposes ``register(subparsers)``. Only
the module of the command being run is imported (all of them for ``cadence --help``), so
``cadence report`` does not wait for torch to load.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from cadence import __version__

#: The sub-commands, in the order ``cadence --help`` lists them.
COMMANDS: tuple[str, ...] = ("demo", "bench", "report", "schedule", "learn")


def _module(command: str) -> Any:
    """The module that registers ``command`` (``register(subparsers) -> None`` adds its
    parser and sets ``func``, called with the parsed namespace, returning an exit code)."""
    if command == "demo":
        from cadence import demo

        return demo
    if command == "bench":
        from cadence.bench import cli as bench_cli

        return bench_cli
    if command == "report":
        from cadence.report import cli as report_cli

        return report_cli
    if command == "schedule":
        from cadence.schedules import cli as schedules_cli

        return schedules_cli
    from cadence.learn import cli as learn_cli

    return learn_cli


class _Version(argparse.Action):
    """``--version``: cadence's version and torch's (imported only when asked)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the versions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        import torch

        sys.stdout.write(f"cadence {__version__} (torch {torch.__version__})\n")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with only ``command``'s sub-parser when it names one (else all)."""
    parser = argparse.ArgumentParser(
        prog="cadence", description="Adaptive training regimes for PyTorch."
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [command] if command in COMMANDS else COMMANDS:
        _module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
