"""Turn epoch-based settings into optimizer steps (schedules count optimizer steps)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cadence.schedules._checks import as_float, as_int


def epochs_to_steps(epochs: Any, steps_per_epoch: int) -> Any:
    """Convert epochs to optimizer steps: a number, a list of numbers (e.g. milestones) or a
    mapping of setting names to either (e.g. ``{"warmup_steps": 2, "milestones": [30, 60]}``).

    ``steps_per_epoch`` counts *optimizer* steps: with gradient accumulation over ``k``
    batches it is ``ceil(batches_per_epoch / k)``. Fractional epochs round to the nearest
    step; ``None`` values in a mapping pass through.
    """
    spe = as_int("steps_per_epoch", steps_per_epoch, 1)
    return _convert("epochs", epochs, spe)


def _convert(name: str, value: Any, spe: int) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {k: _convert(f"{name}[{k!r}]", v, spe) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_convert(f"{name}[{i}]", v, spe) for i, v in enumerate(value))
    epochs = as_float(name, value, 0.0)
    return as_int(name, math.floor(epochs * spe + 0.5))
