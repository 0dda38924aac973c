"""Events: the record of every hyper-parameter change, skip, rollback and re-plan.

An :class:`Event` is written for each change the Regime applies, so nothing changes
silently. Sinks receive events as they happen: :class:`MemorySink` keeps them in a list,
:class:`JsonlSink` appends one JSON object per line to a file (flushed per line, so a crash
loses nothing already written). Any object with ``write(event)`` and ``close()`` is a
:class:`Sink` (e.g. a TensorBoard writer). The file format is in ``docs/formats.md``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

#: Allowed values of ``Event.kind`` (see docs/formats.md).
EVENT_KINDS: tuple[str, ...] = ("change", "skip", "rollback", "replan", "drift", "trial",
                                 "restart")


def _json_float(x: Any) -> Any:
    """Make a number JSON-safe: non-finite floats become strings ("nan", "inf", "-inf")."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def json_safe(obj: Any) -> Any:
    """Recursively replace non-finite floats by strings so ``json.dumps`` stays strict."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return _json_float(obj)


def _short(x: Any) -> str:
    """A value in 4 significant digits (``None`` as ``None``)."""
    if isinstance(x, float):
        return f"{x:.4g}"
    return repr(x) if x is None or isinstance(x, str) else str(x)


def _cut(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters: a long one keeps its start and its
    end (where a reason says what was done, ``→ lr ×0.98``), with ``…`` between."""
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    tail = limit // 3
    return line[: limit - tail - 2].rstrip() + " …" + line[-tail:]


@dataclass(repr=False)
class Event:
    """One applied change (or a skip/rollback/replan) and why it happened.

    ``old``/``new`` are the knob's effective values before and after; ``source`` names the
    controller(s) (joined with ``+`` when several agreed) and ``reason`` their explanations.
    ``signals`` holds the signal values the decision was taken from. Skip and rollback
    events may have ``group=None`` and ``knob=None``.
    """

    step: int
    group: str | None
    knob: str | None
    old: float | None
    new: float | None
    source: str
    reason: str
    signals: dict[str, float] = field(default_factory=dict)
    kind: str = "change"

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"Event.kind={self.kind!r} is not one of {EVENT_KINDS}")

    def __str__(self) -> str:
        """One line: step, what changed (group/knob old → new, or the kind), source, and the
        reason cut to 90 characters; the signals are left out (they are in ``signals``)."""
        parts = [f"step {self.step}"]
        if self.knob is not None:
            where = f"{self.group}/{self.knob}" if self.group is not None else self.knob
            head = f"{self.kind} " if self.kind != "change" else ""
            parts.append(f"{head}{where} {_short(self.old)} → {_short(self.new)}")
        elif self.old is not None or self.new is not None:
            parts.append(f"{self.kind} {_short(self.old)} → {_short(self.new)}")
        else:
            parts.append(self.kind if self.group is None else f"{self.kind} {self.group}")
        parts.append(self.source or "?")
        if self.reason:
            parts.append(_cut(self.reason, 90))
        return " · ".join(parts)

    def __repr__(self) -> str:
        """Short: the fields, the reason cut to 40 characters and the number of signals."""
        return (f"Event(step={self.step}, kind={self.kind!r}, group={self.group!r}, "
                f"knob={self.knob!r}, old={_short(self.old)}, new={_short(self.new)}, "
                f"source={self.source!r}, reason={_cut(self.reason, 40)!r}, "
                f"signals=<{len(self.signals)}>)")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict in the ``events.jsonl`` layout (non-finite floats as strings)."""
        d = asdict(self)
        d["old"] = _json_float(d["old"])
        d["new"] = _json_float(d["new"])
        d["signals"] = {k: _json_float(float(v)) for k, v in self.signals.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """Inverse of :meth:`to_dict` (string "nan"/"inf" become floats again)."""

        def num(x: Any) -> Any:
            return float(x) if isinstance(x, str) else x

        return cls(
            step=int(d["step"]),
            group=d.get("group"),
            knob=d.get("knob"),
            old=num(d.get("old")),
            new=num(d.get("new")),
            source=d.get("source", ""),
            reason=d.get("reason", ""),
            signals={k: float(num(v)) for k, v in (d.get("signals") or {}).items()},
            kind=d.get("kind", "change"),
        )


@runtime_checkable
class Sink(Protocol):
    """Receives events and metrics records as they happen (``regime.sinks``); ``close``
    releases files or writers. A metrics record has the layout of ``metrics.jsonl``
    (docs/formats.md)."""

    def write(self, event: Event) -> None: ...

    def metrics(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """Keeps every event in ``self.events`` (a list); metrics records are not kept."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, event: Event) -> None:
        self.events.append(event)

    def metrics(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class JsonLines:
    """Append-only JSON-lines file, flushed (and fsync-free) after every line.

    Created (with parent folders) on construction, so an empty run still has its file;
    used for both ``events.jsonl`` and ``metrics.jsonl``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write_dict(self, record: dict[str, Any]) -> None:
        if self._fh is None:  # reopened after close()
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._fh.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()
            self._fh = None

    def __del__(self) -> None:
        self.close()


class JsonlSink(JsonLines):
    """Writes each event as one line of ``events.jsonl`` (see docs/formats.md)."""

    def write(self, event: Event) -> None:
        self.write_dict(event.to_dict())

    def metrics(self, record: dict[str, Any]) -> None:
        pass  # events only; metrics go to their own file


def read_events(path: str | os.PathLike[str]) -> list[Event]:
    """Read an ``events.jsonl`` file back into a list of :class:`Event`."""
    with open(path, encoding="utf-8") as fh:
        return [Event.from_dict(json.loads(line)) for line in fh if line.strip()]


__all__ = [
    "EVENT_KINDS",
    "Event",
    "JsonLines",
    "JsonlSink",
    "MemorySink",
    "Sink",
    "json_safe",
    "read_events",
]
