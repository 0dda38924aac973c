"""Read a run folder (``config.json``, ``events.jsonl``, ``metrics.jsonl``) into plain data.

The formats are described in ``docs/formats.md``. Reading is tolerant of what a live or
crashed run leaves behind: a missing file reads as empty and a malformed line (typically a
half-written last line) is skipped and counted, so a dashboard can be drawn mid-run.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Event kinds that mark trouble; the dashboard draws them in warning colours.
ALERT_KINDS: tuple[str, ...] = ("skip", "rollback")


@dataclass
class RunData:
    """Everything the dashboard needs from one run folder."""

    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0  # malformed JSONL lines skipped while reading
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # ---- derived views -------------------------------------------------------------
    def loss_series(self) -> tuple[list[int], list[float]]:
        """Training loss per logged step (lines without a finite loss are left out)."""
        if "loss" not in self._cache:  # computed once: the dashboard asks per panel
            self._cache["loss"] = self._loss_series()
        return self._cache["loss"]  # type: ignore[no-any-return]

    def _loss_series(self) -> tuple[list[int], list[float]]:
        """Training loss per logged step (lines without a finite loss are left out)."""
        steps, losses = [], []
        for row in self.metrics:
            loss = _as_float(row.get("loss"))
            if loss is not None and "step" in row:
                steps.append(int(row["step"]))
                losses.append(loss)
        return steps, losses

    def metric_series(self) -> dict[str, tuple[list[int], list[float]]]:
        """Observed validation metrics (``regime.observe``): name -> (steps, values)."""
        if "metrics" not in self._cache:  # computed once: the dashboard asks per panel
            self._cache["metrics"] = self._metric_series()
        return self._cache["metrics"]  # type: ignore[no-any-return]

    def _metric_series(self) -> dict[str, tuple[list[int], list[float]]]:
        """Observed validation metrics (``regime.observe``): name -> (steps, values)."""
        out: dict[str, tuple[list[int], list[float]]] = {}
        for row in self.metrics:
            for name, value in (row.get("metrics") or {}).items():
                v = _as_float(value)
                if v is None:
                    continue
                steps, values = out.setdefault(name, ([], []))
                steps.append(int(row.get("step", 0)))
                values.append(v)
        return out

    def knob_series(self) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
        """Hyper-parameter values over time: knob -> group -> (steps, values)."""
        if "knobs" not in self._cache:  # computed once: the dashboard asks per panel
            self._cache["knobs"] = self._knob_series()
        return self._cache["knobs"]  # type: ignore[no-any-return]

    def _knob_series(self) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
        """Hyper-parameter values over time: knob -> group -> (steps, values)."""
        out: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
        for row in self.metrics:
            step = int(row.get("step", 0))
            for group, knobs in (row.get("values") or {}).items():
                for knob, value in (knobs or {}).items():
                    v = _as_float(value)
                    if v is None:
                        continue
                    steps, values = out.setdefault(knob, {}).setdefault(str(group), ([], []))
                    steps.append(step)
                    values.append(v)
        return out

    def signal_series(self) -> dict[str, tuple[list[int], list[float]]]:
        """Logged signals over time: name -> (steps, values)."""
        if "signals" not in self._cache:  # computed once: the dashboard asks per panel
            self._cache["signals"] = self._signal_series()
        return self._cache["signals"]  # type: ignore[no-any-return]

    def _signal_series(self) -> dict[str, tuple[list[int], list[float]]]:
        """Logged signals over time: name -> (steps, values)."""
        out: dict[str, tuple[list[int], list[float]]] = {}
        for row in self.metrics:
            step = int(row.get("step", 0))
            for name, value in (row.get("signals") or {}).items():
                v = _as_float(value)
                if v is None:
                    continue
                steps, values = out.setdefault(name, ([], []))
                steps.append(step)
                values.append(v)
        return out

    def decision_signals(self) -> list[str]:
        """Signal names that appear in events, most frequent first: what drove decisions."""
        counts: Counter[str] = Counter()
        for event in self.events:
            counts.update((event.get("signals") or {}).keys())
        return [name for name, _ in counts.most_common()]

    def changes_by_source(self) -> dict[str, int]:
        """Number of events per source, most frequent first."""
        counts = Counter(str(e.get("source") or "?") for e in self.events)
        return dict(counts.most_common())

    def controllers(self) -> dict[str, int]:
        """Every controller of the run (``config.json``'s ``running`` list, the preset's
        included; else its ``controllers``) with how many events it took part in, followed
        by any other source of events except the guard and the regime."""
        cfg = self.config
        running = cfg.get("running") if isinstance(cfg.get("running"), dict) else {}
        named = running.get("controllers") if isinstance(running, dict) else None
        if not isinstance(named, list):
            named = [c.get("name") if isinstance(c, dict) else c
                     for c in cfg.get("controllers") or [] if isinstance(c, (dict, str))]
        acted: Counter[str] = Counter()
        for event in self.events:
            acted.update(part for part in str(event.get("source") or "").split("+") if part)
        out = {str(n): acted.get(str(n), 0) for n in named if n is not None}
        for source, n in acted.most_common():
            if source not in out and source not in ("guard", "regime"):
                out[source] = n
        return out

    def events_by_kind(self) -> dict[str, int]:
        counts = Counter(str(e.get("kind") or "change") for e in self.events)
        return dict(counts.most_common())

    def last_step(self) -> int:
        steps = [int(r["step"]) for r in self.metrics if "step" in r]
        steps += [int(e["step"]) for e in self.events if e.get("step") is not None]
        return max(steps, default=0)

    def wall_time(self) -> float | None:
        """Seconds between the first and last metrics line, when lines carry ``time``."""
        times = [t for t in (_as_float(r.get("time")) for r in self.metrics) if t is not None]
        return (max(times) - min(times)) if len(times) >= 2 else None


RUN_FILES: tuple[str, ...] = ("config.json", "events.jsonl", "metrics.jsonl")


def is_run_folder(path: str | Path) -> bool:
    """True when ``path`` holds at least one of the run files."""
    folder = Path(path)
    return folder.is_dir() and any((folder / f).exists() for f in RUN_FILES)


def load_run(path: str | Path, name: str | None = None) -> RunData:
    """Read one run folder. Raises ``FileNotFoundError`` if ``path`` is not a folder or holds
    none of the run files (a wrong path should fail loudly, not draw an empty page), and
    ``ValueError`` naming the file if ``config.json`` is not a JSON object or a JSONL file
    is binary. Malformed JSONL lines (a half-written last line) are skipped and counted."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder {str(folder)!r} does not exist or is not a folder")
    files = [folder / f for f in RUN_FILES]
    if not any(f.exists() for f in files):
        raise FileNotFoundError(
            f"{str(folder)!r} holds none of config.json, events.jsonl, metrics.jsonl; "
            "is it a cadence run folder (Regime(..., log_dir=...))?"
        )
    config: dict[str, Any] = {}
    if files[0].exists():
        try:
            loaded = json.loads(files[0].read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{str(files[0])!r} is not a JSON configuration ({err}); the "
                             "Regime writes it once at the start: restore or delete it") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{str(files[0])!r} holds a {type(loaded).__name__}, not the "
                             "JSON object a Regime writes; restore or delete it")
        config = loaded
    events, bad_e = _read_jsonl(files[1])
    metrics, bad_m = _read_jsonl(files[2])
    return RunData(
        path=folder,
        name=name or folder.resolve().name,
        config=config,
        events=events,
        metrics=metrics,
        bad_lines=bad_e + bad_m,
    )


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    bad = 0
    if not path.exists():
        return rows, bad
    with path.open("rb") as fh:
        if b"\0" in fh.read(4096):
            raise ValueError(f"{str(path)!r} is a binary file, not JSON lines; is it the "
                             "events.jsonl / metrics.jsonl of a cadence run?")
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(row, dict) and _well_formed(row):
                rows.append(row)
            else:
                bad += 1
    return rows, bad


#: Fields that, when present and not null, must hold a table (name -> value).
_TABLE_FIELDS: tuple[str, ...] = ("signals", "metrics", "values")


def _well_formed(row: dict[str, Any]) -> bool:
    """A line the dashboard can draw: ``step`` (if given) is a finite number and the named
    tables are tables. Anything else, e.g. markup where a step belongs, is skipped and
    counted like a malformed line."""
    step = row.get("step")
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step)
    ):
        return False
    return all(row.get(key) is None or isinstance(row[key], dict) for key in _TABLE_FIELDS)


def _as_float(value: Any) -> float | None:
    """A finite float, or None (JSON may carry null, NaN or Infinity after a blow-up)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
