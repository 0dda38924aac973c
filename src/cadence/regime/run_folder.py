"""The run folder: the files one run writes, in the format of docs/formats.md.

``config.json`` (the configuration, written once at the start, atomically),
``events.jsonl`` (one Event per line) and ``metrics.jsonl`` (one record per line), both
flushed line by line so a crash leaves them valid up to their last complete line, and
``snapshot.pt`` (the last known-good parameters, optimizer state and regime state,
replaced atomically; ``Regime.load_snapshot()`` goes back to it). The
Regime writes one on rank 0 when given ``log_dir``; the demo writes its plain-torch
baseline through the same class, so the dashboard reads both alike.

A folder that already holds a run (``config.json`` or ``events.jsonl``) is refused unless
the caller resumes it (``Regime(..., resume=True)``): two runs appended to one folder would
mix in one dashboard.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cadence.events import Event, JsonLines, JsonlSink, json_safe

CONFIG_FILE = "config.json"
EVENTS_FILE = "events.jsonl"
METRICS_FILE = "metrics.jsonl"
SNAPSHOT_FILE = "snapshot.pt"
RUN_FILES: tuple[str, ...] = (CONFIG_FILE, EVENTS_FILE, METRICS_FILE)


def check_resume(resume: Any, log_dir: Any) -> bool | str:
    """``resume`` is ``False`` (a new run: an existing run folder is refused), ``True``
    (continue the run in ``log_dir`` from its snapshot, appending) or ``"append"`` (append
    only: the caller restores the state itself, as the trainer integrations do)."""
    if resume is not True and resume is not False and resume != "append":
        raise ValueError(f"resume must be True, False or 'append', got {resume!r}")
    if resume and log_dir is None:
        raise ValueError("resume=... needs log_dir (the run folder to continue)")
    return resume  # type: ignore[no-any-return]


def resume_run(regime: Any) -> None:
    """Go back to the snapshot in the Regime's run folder (parameters, optimizer state and
    the Regime's state), so the run continues where it was last known good."""
    path = Path(regime.log_dir) / SNAPSHOT_FILE
    if not path.is_file():
        warnings.warn(f"resume=True but {path} does not exist (the run stopped before its "
                      "first snapshot): the run starts again at step 0, appending to the "
                      "folder", stacklevel=3)
        return
    regime.load_snapshot(path)


class RunFolder:
    """Creates ``path``, writes ``config.json`` and opens the event and metric files.

    ``resume=False`` refuses a folder that already holds a run."""

    def __init__(self, path: str | os.PathLike[str], config: Mapping[str, Any],
                 resume: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"log_dir {str(self.path)!r} exists and is not a folder")
        held = [f for f in (CONFIG_FILE, EVENTS_FILE) if (self.path / f).is_file()]
        if held and not resume:
            raise FileExistsError(
                f"log_dir {str(self.path)!r} already holds a run ({', '.join(held)}); pass "
                "resume=True to continue it from its snapshot, or choose a new folder "
                "(appending a second run would mix two runs in one dashboard)")
        self.path.mkdir(parents=True, exist_ok=True)
        # written whole or not at all: a crash mid-write leaves no half config.json
        tmp = self.path / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(json_safe(dict(config)), indent=2), encoding="utf-8")
        os.replace(tmp, self.path / CONFIG_FILE)
        self._events = JsonlSink(self.path / EVENTS_FILE)
        self._metrics = JsonLines(self.path / METRICS_FILE)

    @property
    def snapshot_path(self) -> Path:
        return self.path / SNAPSHOT_FILE

    def write(self, event: Event) -> None:
        """Append one event (a :class:`cadence.events.Sink`)."""
        self._events.write(event)

    def metrics(self, record: Mapping[str, Any]) -> None:
        """Append one metrics record."""
        self._metrics.write_dict(dict(record))

    def close(self) -> None:
        self._events.close()
        self._metrics.close()


__all__ = [
    "CONFIG_FILE",
    "EVENTS_FILE",
    "METRICS_FILE",
    "RUN_FILES",
    "SNAPSHOT_FILE",
    "RunFolder",
    "check_resume",
    "resume_run",
]
