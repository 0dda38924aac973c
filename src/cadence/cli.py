"""The ``cadence`` command line: ``cadence demo``, ``cadence bench``, ``cadence report``, …

Each sub-command lives in its own module, which exposes ``register(subparsers)``; the
module is imported only when listed here, so a missing optional extra breaks only the
sub-command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command modules, each with ``register(subparsers) -> None`` that adds its parser
#: and sets ``func`` (called with the parsed namespace, returns an exit code).
_COMMAND_MODULES = (
    "cadence.demo",
    "cadence.bench.cli",
    "cadence.report.cli",
    "cadence.schedules.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadence", description="Adaptive training regimes for PyTorch."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("cadence"):
                continue  # that part is not built yet
            raise
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
