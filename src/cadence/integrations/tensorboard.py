"""TensorBoard sink: a Regime's events and metrics as TensorBoard scalars and text.

``TensorBoardSink(log_dir).attach(regime)`` writes, at each real step where the Regime logs
metrics: ``cadence/loss``, ``cadence/<knob>/<group>`` for every knob of every group,
``cadence/signals/<name>`` and observed ``cadence/metrics/<name>``; and for every event:
a text entry (``cadence/events``: group, knob, old → new, source, reason) and a count per
kind (``cadence/events/<kind>``), so skips and rollbacks show as spikes.
"""

from __future__ import annotations

import math
import os
from typing import Any

from cadence.events import Event


class TensorBoardSink:
    """Event and metric sink backed by ``torch.utils.tensorboard.SummaryWriter``.

    Args:
        log_dir: folder for the event files, or an existing ``SummaryWriter`` (shared with
            the rest of a training script; then ``close()`` leaves it open).
        prefix: tag prefix (``"cadence"``).
    """

    def __init__(self, log_dir: str | os.PathLike[str] | Any, prefix: str = "cadence") -> None:
        self.writer: Any  # a SummaryWriter, or any object with its methods
        if hasattr(log_dir, "add_scalar"):
            self.writer, self._owns = log_dir, False
        else:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "TensorBoardSink needs tensorboard: pip install 'cadence[tensorboard]'"
                ) from err
            self.writer, self._owns = SummaryWriter(log_dir=str(log_dir)), True
        self.prefix = prefix.rstrip("/")

    def attach(self, regime: Any) -> TensorBoardSink:
        """Subscribe to ``regime``'s events and metrics records; returns ``self``."""
        regime.sinks.append(self)
        return self

    # -- Sink protocol ---------------------------------------------------------------------
    def write(self, event: Event) -> None:
        p = self.prefix
        what = f"{event.group or 'all'}/{event.knob}: {_fmt(event.old)} → {_fmt(event.new)}" \
            if event.knob else event.kind
        self.writer.add_text(f"{p}/events", f"step {event.step} · **{event.source}** · {what} "
                             f"· {event.reason}", event.step)
        self.writer.add_scalar(f"{p}/events/{event.kind}", 1.0, event.step)

    def metrics(self, record: dict[str, Any]) -> None:
        """One metrics record (the ``metrics.jsonl`` layout of docs/formats.md)."""
        p, step = self.prefix, int(record.get("step", 0))
        if _finite(record.get("loss")):
            self.writer.add_scalar(f"{p}/loss", float(record["loss"]), step)
        for group, knobs in (record.get("values") or {}).items():
            for knob, value in knobs.items():
                if _finite(value):
                    self.writer.add_scalar(f"{p}/{knob}/{group}", float(value), step)
        for section in ("signals", "metrics"):
            for name, value in (record.get(section) or {}).items():
                if _finite(value):
                    self.writer.add_scalar(f"{p}/{section}/{name}", float(value), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.flush()
        if self._owns:
            self.writer.close()


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
