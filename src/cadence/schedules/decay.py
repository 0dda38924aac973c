"""Closed-form decays: constant, linear, step, multistep, exponential, polynomial, cosine,
inverse square root.

Argument names follow the torch (``torch.optim.lr_scheduler``) or Hugging Face
counterpart, so a user can switch without relearning; absolute learning rates in those
APIs (``eta_min``) become fractions of the group's base rate here (``floor``).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import cast

from cadence.schedules._checks import as_float, as_floor, as_int
from cadence.schedules.base import Schedule, _set


@dataclass(frozen=True)
class Constant(Schedule):
    """``f(t) = value``."""

    value: float = 1.0

    kind = "constant"

    def __post_init__(self) -> None:
        _set(self, "value", as_float("value", self.value, 0.0))

    def at(self, step: int) -> float:
        return self.value


@dataclass(frozen=True)
class Linear(Schedule):
    """Like ``LinearLR``: ``start + (end - start) * min(t, total_iters) / total_iters``."""

    start_factor: float = 1.0 / 3
    end_factor: float = 1.0
    total_iters: int = 5

    kind = "linear"

    def __post_init__(self) -> None:
        _set(self, "start_factor", as_float("start_factor", self.start_factor, 0.0))
        _set(self, "end_factor", as_float("end_factor", self.end_factor, 0.0))
        _set(self, "total_iters", as_int("total_iters", self.total_iters, 1))

    def at(self, step: int) -> float:
        frac = min(step, self.total_iters) / self.total_iters
        return self.start_factor + (self.end_factor - self.start_factor) * frac


@dataclass(frozen=True)
class Step(Schedule):
    """Like ``StepLR``: ``gamma ** (t // step_size)``."""

    step_size: int
    gamma: float = 0.1

    kind = "step"

    def __post_init__(self) -> None:
        _set(self, "step_size", as_int("step_size", self.step_size, 1))
        _set(self, "gamma", as_float("gamma", self.gamma, 0.0))

    def at(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class MultiStep(Schedule):
    """Like ``MultiStepLR``: ``gamma ** (number of milestones <= t)``.

    Milestones must be non-decreasing; a repeated milestone applies ``gamma`` once per
    repetition, as in torch.
    """

    milestones: tuple[int, ...]
    gamma: float = 0.1

    kind = "multistep"

    def __post_init__(self) -> None:
        if isinstance(self.milestones, (str, bytes)) or not hasattr(self.milestones, "__iter__"):
            raise TypeError(f"milestones must be a sequence of steps, got {self.milestones!r}")
        ms = tuple(as_int(f"milestones[{i}]", m, 0) for i, m in enumerate(self.milestones))
        for i in range(1, len(ms)):
            if ms[i] < ms[i - 1]:
                raise ValueError(f"milestones must be in increasing order, got {list(ms)}")
        _set(self, "milestones", ms)
        _set(self, "gamma", as_float("gamma", self.gamma, 0.0))

    def at(self, step: int) -> float:
        return self.gamma ** bisect_right(self.milestones, step)


@dataclass(frozen=True)
class Exponential(Schedule):
    """Like ``ExponentialLR`` (``decay_steps=1``): ``gamma ** (t / decay_steps)``.

    With ``staircase=True`` the exponent is ``t // decay_steps`` (optax's
    ``exponential_decay`` with ``transition_steps=decay_steps``). ``gamma > 1`` grows
    the rate, as an LR range test does.
    """

    gamma: float
    decay_steps: int = 1
    staircase: bool = False

    kind = "exponential"

    def __post_init__(self) -> None:
        _set(self, "gamma", as_float("gamma", self.gamma, 0.0, low_open=True))
        _set(self, "decay_steps", as_int("decay_steps", self.decay_steps, 1))
        if not isinstance(self.staircase, bool):
            raise TypeError(f"staircase must be a bool, got {self.staircase!r}")

    def at(self, step: int) -> float:
        if self.staircase:
            return self.gamma ** (step // self.decay_steps)
        if self.decay_steps == 1:
            return self.gamma**step
        return self.gamma ** (step / self.decay_steps)


@dataclass(frozen=True)
class Polynomial(Schedule):
    """Like ``PolynomialLR``: ``floor + (1 - floor) * (1 - min(t, T) / T) ** power``."""

    total_iters: int = 5
    power: float = 1.0
    floor: float = 0.0

    kind = "polynomial"

    def __post_init__(self) -> None:
        _set(self, "total_iters", as_int("total_iters", self.total_iters, 1))
        _set(self, "power", as_float("power", self.power, 0.0, low_open=True))
        _set(self, "floor", as_floor(self.floor))

    def at(self, step: int) -> float:
        frac = 1.0 - min(self.total_iters, step) / self.total_iters
        return self.floor + (1.0 - self.floor) * frac**self.power


@dataclass(frozen=True)
class Cosine(Schedule):
    """Like ``CosineAnnealingLR``: ``floor + (1 - floor) * (1 + cos(pi * t / T_max)) / 2``.

    ``floor`` is torch's ``eta_min`` as a fraction of the base rate. Unlike torch, the
    value stays at ``floor`` after ``T_max`` instead of rising again.
    """

    T_max: int
    floor: float = 0.0

    kind = "cosine"

    def __post_init__(self) -> None:
        _set(self, "T_max", as_int("T_max", self.T_max, 1))
        _set(self, "floor", as_floor(self.floor))

    def at(self, step: int) -> float:
        if step >= self.T_max:
            return self.floor
        return self.floor + (1.0 - self.floor) * (1.0 + math.cos(math.pi * step / self.T_max)) / 2


@dataclass(frozen=True)
class InverseSqrt(Schedule):
    """Hugging Face ``get_inverse_sqrt_schedule``: linear warmup ``t / w``, then
    ``1 / sqrt((t - w + timescale) / timescale)`` (1.0 at the end of warmup).

    ``timescale`` defaults, as in HF, to ``num_warmup_steps`` or 10 000 when that is 0.
    """

    num_warmup_steps: int = 0
    timescale: float | None = None

    kind = "inverse_sqrt"

    def __post_init__(self) -> None:
        w = as_int("num_warmup_steps", self.num_warmup_steps, 0)
        _set(self, "num_warmup_steps", w)
        ts = (w or 10_000) if self.timescale is None else self.timescale
        ts = as_float("timescale", ts, 0.0, low_open=True)
        _set(self, "timescale", int(ts) if ts.is_integer() else ts)

    def at(self, step: int) -> float:
        w, ts = self.num_warmup_steps, cast(float, self.timescale)  # resolved on init
        if step < w:
            return step / w
        return 1.0 / math.sqrt((step + ts - w) / ts)
