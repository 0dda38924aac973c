"""``cadence report RUN_DIR [RUN_DIR ...] [-o out.html]``: write the run dashboard."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cadence.report.dashboard import STAGES
from cadence.report.run import is_run_folder

DEFAULT_NAME = "dashboard.html"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command to the top-level ``cadence`` parser."""
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML dashboard for one or more run folders",
        description=(
            "Build one HTML file (plotly.js inlined, opens offline) from run folders written "
            "by Regime(..., log_dir=DIR). Several folders are overlaid. A folder that holds "
            "runs in sub-folders (e.g. a `cadence demo` output) expands to those runs."
        ),
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folder(s)")
    parser.add_argument(
        "-o", "--out", default=None,
        help=f"output file (default: RUN_DIR/{DEFAULT_NAME} for one run, "
        f"./{DEFAULT_NAME} for several)",
    )
    parser.add_argument("--title", default=None, help="page title")
    parser.set_defaults(func=_run)


def expand_run_dirs(paths: list[str]) -> list[Path]:
    """Each path as a run folder, or its run sub-folders when it is a folder of runs."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise FileNotFoundError(f"RUN_DIR {raw!r} does not exist or is not a folder")
        if is_run_folder(path):
            out.append(path)
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir() and is_run_folder(p))
        if not children:
            raise FileNotFoundError(
                f"RUN_DIR {raw!r} holds no config.json/events.jsonl/metrics.jsonl and no "
                "run sub-folders; pass the log_dir given to Regime"
            )
        out += children
    return out


def default_output(run_args: list[str], runs: list[Path]) -> Path:
    if len(run_args) == 1:
        return Path(run_args[0]) / DEFAULT_NAME
    return Path(DEFAULT_NAME)


def _run(args: argparse.Namespace) -> int:
    from cadence.report.dashboard import write_dashboard

    try:
        runs = expand_run_dirs(args.runs)
    except FileNotFoundError as err:
        print(f"cadence report: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_output(args.runs, runs)
    try:
        with _Progress(runs) as progress:
            path = write_dashboard(runs, out, title=args.title, progress=progress)
    except ImportError as err:
        print(f"cadence report: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"cadence report: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"cadence report: cannot write -o {str(out)!r}: {err.strerror or err}",
              file=sys.stderr)
        return 2
    print(f"dashboard for {len(runs)} run(s): {path.resolve()}")
    return 0


#: Run folders whose JSONL files hold more than this many bytes show progress.
PROGRESS_BYTES = 2_000_000


class _Progress:
    """The drawing stages as a rich progress bar, for large runs on a terminal; silent
    otherwise (small runs, output to a file or pipe, ``CADENCE_NO_PROGRESS=1``, or rich
    not installed)."""

    def __init__(self, runs: list[Path]) -> None:
        size = sum((r / f).stat().st_size for r in runs for f in ("events.jsonl", "metrics.jsonl")
                   if (r / f).is_file())
        self.bar: Any = None
        if (size < PROGRESS_BYTES or not sys.stderr.isatty()
                or os.environ.get("CADENCE_NO_PROGRESS", "") in ("1", "true", "yes")):
            return
        try:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:
            return
        self.bar = Progress(TextColumn("cadence report: {task.description:<18}"), BarColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task("", total=len(STAGES))
        self.seen = 0

    def __call__(self, stage: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=stage, completed=self.seen)
            self.seen += 1

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=len(STAGES))
            self.bar.stop()
