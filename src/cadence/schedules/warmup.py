"""Warmups (linear, exponential, constant) and warmup-stable-decay (Hugging Face semantics).

The lower-case builders (``warmup``, ``warmup_cosine``, ``wsd``) are in
:mod:`cadence.schedules.factories`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

from cadence.schedules._checks import as_choice, as_float, as_floor, as_int
from cadence.schedules.base import Schedule, _set
from cadence.schedules.decay import Constant

#: where each warmup starts when ``start`` is not given: 0 (HF's linear warmup), two
#: decades below the target (exponential cannot start at 0), torch ``ConstantLR``'s 1/3.
_DEFAULT_START = {"linear": 0.0, "exponential": 0.01, "constant": 1.0 / 3}


@dataclass(frozen=True)
class Warmup(Schedule):
    """Ramp for ``n`` steps up to ``then(0)``, then follow ``then`` at its local step ``t - n``.

    ``warmup_type``: ``"linear"`` (``start + (target - start) * t / n``), ``"exponential"``
    (``start * (target / start) ** (t / n)``) or ``"constant"`` (hold ``start``, torch's
    ``ConstantLR``). The target is ``then(0)`` (1.0 for every decay here), so the curve is
    continuous at ``n`` for the ramps.
    """

    n: int
    then: Schedule = field(default_factory=Constant)
    warmup_type: str = "linear"
    start: float | None = None

    kind = "warmup"

    def __post_init__(self) -> None:
        _set(self, "n", as_int("n", self.n, 1))
        if not isinstance(self.then, Schedule):
            kind = type(self.then).__name__
            raise TypeError(f"then must be a Schedule, got {kind} {self.then!r}")
        wtype = as_choice("warmup_type", self.warmup_type, tuple(_DEFAULT_START))
        _set(self, "warmup_type", wtype)
        start = _DEFAULT_START[wtype] if self.start is None else self.start
        _set(self, "start", as_float("start", start, 0.0, 1.0, low_open=wtype == "exponential"))

    def at(self, step: int) -> float:
        if step >= self.n:
            return self.then.at(step - self.n)
        start = cast(float, self.start)  # resolved on init
        if self.warmup_type == "constant":
            return start
        target = self.then.at(0)
        if self.warmup_type == "linear":
            return start + (target - start) * step / self.n
        return start * (target / start) ** (step / self.n)


_SHAPES = ("linear", "cosine", "1-sqrt")


@dataclass(frozen=True)
class WarmupStableDecay(Schedule):
    """Warmup-stable-decay with Hugging Face ``get_wsd_schedule`` semantics.

    Warm up from ``min_lr_ratio`` to 1 (``warmup_type``), hold 1 for ``num_stable_steps``,
    decay to ``min_lr_ratio`` (``decay_type``: ``"linear"``, ``"cosine"`` or the
    ``"1-sqrt"`` tail), then stay there. The fields are HF's arguments (HF's
    ``num_training_steps`` is ``num_warmup_steps + num_stable_steps + num_decay_steps``);
    :func:`cadence.schedules.wsd` builds one from ``total_steps`` instead.
    """

    num_warmup_steps: int
    num_decay_steps: int
    num_stable_steps: int = 0
    warmup_type: str = "linear"
    decay_type: str = "cosine"
    min_lr_ratio: float = 0.0
    num_cycles: float = 0.5

    kind = "wsd"

    def __post_init__(self) -> None:
        _set(self, "num_warmup_steps", as_int("num_warmup_steps", self.num_warmup_steps, 0))
        _set(self, "num_decay_steps", as_int("num_decay_steps", self.num_decay_steps, 1))
        _set(self, "num_stable_steps", as_int("num_stable_steps", self.num_stable_steps, 0))
        _set(self, "warmup_type", as_choice("warmup_type", self.warmup_type, _SHAPES))
        _set(self, "decay_type", as_choice("decay_type", self.decay_type, _SHAPES))
        _set(self, "min_lr_ratio", as_floor(self.min_lr_ratio, "min_lr_ratio"))
        _set(self, "num_cycles", as_float("num_cycles", self.num_cycles, 0.0, low_open=True))

    def at(self, step: int) -> float:
        w, s, d = self.num_warmup_steps, self.num_stable_steps, self.num_decay_steps
        low = self.min_lr_ratio
        if step < w:
            p = step / w
            if self.warmup_type == "linear":
                f = p
            elif self.warmup_type == "cosine":
                f = 0.5 * (1.0 - math.cos(math.pi * p))
            else:
                f = 1.0 - math.sqrt(1.0 - p)
            return max(0.0, f * (1.0 - low) + low)
        if step < w + s:
            return 1.0
        if step < w + s + d:
            p = (step - w - s) / d
            if self.decay_type == "linear":
                f = 1.0 - p
            elif self.decay_type == "cosine":
                f = 0.5 * (1.0 + math.cos(math.pi * self.num_cycles * 2.0 * p))
            else:
                f = 1.0 - math.sqrt(p)
            return max(0.0, f * (1.0 - low) + low)
        return low

