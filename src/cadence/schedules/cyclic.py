"""Schedules with cycles: SGDR warm restarts, one-cycle and cyclical (CLR) rates.

The formulas follow torch's ``CosineAnnealingWarmRestarts``, ``OneCycleLR`` and
``CyclicLR`` step for step, with absolute rates expressed as fractions of the group's
base rate (the peak, 1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

from cadence.schedules._checks import as_choice, as_float, as_floor, as_int
from cadence.schedules.base import Schedule, _set


@dataclass(frozen=True)
class SGDR(Schedule):
    """Cosine annealing with warm restarts, like ``CosineAnnealingWarmRestarts``.

    Cycle ``i`` lasts ``T_0 * T_mult**i`` steps; inside it
    ``f = floor + (1 - floor) * cycle_decay**i * (1 + cos(pi * T_cur / T_i)) / 2``.
    ``floor`` is torch's ``eta_min`` as a fraction; ``cycle_decay < 1`` lowers each new
    peak (timm's ``cycle_decay``), ``1.0`` reproduces torch.
    """

    T_0: int
    T_mult: int = 1
    floor: float = 0.0
    cycle_decay: float = 1.0

    kind = "sgdr"

    def __post_init__(self) -> None:
        _set(self, "T_0", as_int("T_0", self.T_0, 1))
        _set(self, "T_mult", as_int("T_mult", self.T_mult, 1))
        _set(self, "floor", as_floor(self.floor))
        _set(self, "cycle_decay", as_float("cycle_decay", self.cycle_decay, 0.0, 1.0))

    def cycle(self, step: int) -> tuple[int, int, int]:
        """``(cycle index, steps since its restart, its length)`` at ``step``."""
        t0, m = self.T_0, self.T_mult
        if m == 1:
            i, t_cur = divmod(step, t0)
            return i, t_cur, t0
        # Cycle i starts at T_0 (m**i - 1) / (m - 1); the log gives a guess that integer
        # arithmetic then corrects (the float log can be off by one near a boundary).
        i = int(math.log(step / t0 * (m - 1) + 1, m))

        def start(k: int) -> int:
            return t0 * (m**k - 1) // (m - 1)

        while i > 0 and start(i) > step:
            i -= 1
        while start(i + 1) <= step:
            i += 1
        return i, step - start(i), t0 * m**i

    def at(self, step: int) -> float:
        i, t_cur, t_i = self.cycle(step)
        peak = self.cycle_decay**i if i else 1.0
        return self.floor + (1.0 - self.floor) * peak * (1.0 + math.cos(math.pi * t_cur / t_i)) / 2


@dataclass(frozen=True)
class OneCycle(Schedule):
    """The 1cycle policy, like ``OneCycleLR``; torch's ``max_lr`` is the group's base rate.

    Warm up from ``1 / div_factor`` to 1.0 over ``pct_start`` of ``total_steps``, then
    anneal (``"cos"`` or ``"linear"``) to ``1 / (div_factor * final_div_factor)``; with
    ``three_phase`` come back down to ``1 / div_factor`` symmetrically first. The value
    stays at the minimum after ``total_steps`` (torch raises there instead).
    """

    total_steps: int
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False

    kind = "one_cycle"

    def __post_init__(self) -> None:
        total = as_int("total_steps", self.total_steps, 1)
        pct = as_float("pct_start", self.pct_start, 0.0, 1.0, low_open=True, high_open=True)
        _set(self, "total_steps", total)
        _set(self, "pct_start", pct)
        _set(self, "anneal_strategy", as_choice("anneal_strategy", self.anneal_strategy,
                                                ("cos", "linear")))
        _set(self, "div_factor", as_float("div_factor", self.div_factor, 1.0))
        _set(self, "final_div_factor", as_float("final_div_factor", self.final_div_factor, 1.0))
        if not isinstance(self.three_phase, bool):
            raise TypeError(f"three_phase must be a bool, got {self.three_phase!r}")
        ends = [end for end, _, _ in self._phases()]
        if ends[0] <= 0 or any(b <= a for a, b in zip(ends, ends[1:], strict=False)):
            raise ValueError(
                f"pct_start={pct} with total_steps={total} leaves a phase with no steps "
                f"(phase ends {ends}); use more steps or a pct_start further from 0 and 1"
                + (" (<= 0.5 with three_phase)" if self.three_phase else "")
            )

    def _phases(self) -> list[tuple[float, float, float]]:
        """``(end step, start value, end value)`` per phase, as torch computes them."""
        initial = 1.0 / self.div_factor
        low = initial / self.final_div_factor
        up_end = float(self.pct_start * self.total_steps) - 1
        last = float(self.total_steps - 1)
        if self.three_phase:
            down_end = float(2 * self.pct_start * self.total_steps) - 2
            return [(up_end, initial, 1.0), (down_end, 1.0, initial), (last, initial, low)]
        return [(up_end, initial, 1.0), (last, 1.0, low)]

    def position(self, step: int) -> tuple[int, float]:
        """``(phase index, fraction of that phase done)`` at ``step``, as torch computes
        them (the fraction stays at 1.0 after ``total_steps``)."""
        phases = self._phases()
        start_step = 0.0
        for i, (end, _, _) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                return i, min((step - start_step) / (end - start_step), 1.0)
            start_step = end
        raise AssertionError("unreachable")

    def _anneal(self, a: float, b: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (b - a) * pct + a

    def at(self, step: int) -> float:
        i, pct = self.position(step)
        _, a, b = self._phases()[i]
        return self._anneal(a, b, pct)

    def momentum_at(self, step: int, base_momentum: float = 0.85,
                    max_momentum: float = 0.95) -> float:
        """Momentum (SGD) or β1 (Adam) at ``step`` as ``OneCycleLR(cycle_momentum=True)``
        cycles it, inversely to the rate: ``max_momentum`` → ``base_momentum`` while the
        rate rises, back to ``max_momentum`` while it falls (and held there in the last
        phase of ``three_phase``)."""
        i, pct = self.position(step)
        hi, lo = float(max_momentum), float(base_momentum)
        ends = [(hi, lo), (lo, hi), (hi, hi)][i]
        return self._anneal(ends[0], ends[1], pct)


_SCALE_MODES = {"triangular": "cycle", "triangular2": "cycle", "exp_range": "iterations"}


@dataclass(frozen=True)
class Cyclic(Schedule):
    """Cyclical learning rates, like ``CyclicLR`` (learning rate only, no momentum).

    ``base_lr`` and ``max_lr`` are fractions of the group's base rate: to reproduce
    ``CyclicLR(opt, base_lr=1e-4, max_lr=1e-2)`` set the group's lr to ``1e-2`` and use
    ``Cyclic(base_lr=0.01, max_lr=1.0)``. Modes ``triangular``, ``triangular2`` (the
    amplitude halves each cycle) and ``exp_range`` (amplitude ``gamma**t``).
    ``scale_mode`` defaults to what torch uses for the mode.
    """

    base_lr: float
    max_lr: float = 1.0
    step_size_up: int = 2000
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    scale_mode: str | None = None

    kind = "cyclic"

    def __post_init__(self) -> None:
        _set(self, "max_lr", as_float("max_lr", self.max_lr, 0.0))
        _set(self, "base_lr", as_float("base_lr", self.base_lr, 0.0, self.max_lr))
        up = as_int("step_size_up", self.step_size_up, 1)
        down = up if self.step_size_down is None else self.step_size_down
        _set(self, "step_size_up", up)
        _set(self, "step_size_down", as_int("step_size_down", down, 1))
        _set(self, "mode", as_choice("mode", self.mode, tuple(_SCALE_MODES)))
        _set(self, "gamma", as_float("gamma", self.gamma, 0.0, 1.0, low_open=True))
        scale_mode = _SCALE_MODES[self.mode] if self.scale_mode is None else self.scale_mode
        _set(self, "scale_mode", as_choice("scale_mode", scale_mode, ("cycle", "iterations")))

    def _scale(self, x: float) -> float:
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 0.5 ** (x - 1)  # == torch's 1 / 2**(x-1), without overflow
        return self.gamma**x

    def at(self, step: int) -> float:
        total = float(self.step_size_up + cast(int, self.step_size_down))  # resolved on init
        ratio = self.step_size_up / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        factor = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        height = (self.max_lr - self.base_lr) * factor
        return self.base_lr + height * self._scale(cycle if self.scale_mode == "cycle" else step)
