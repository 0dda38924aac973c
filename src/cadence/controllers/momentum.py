"""Momentum control: lower momentum (β1) when steps oscillate, raise it when they agree.

The statistic is the smoothed cosine between consecutive gradients (``grad_alignment``).
Three bands with hysteresis: *oscillating* (cos < ``low``), *aligned* (cos > ``high``) and
neutral in between; a band must hold for ``patience`` decisions before the mode changes,
and neutral holds the current value. In *oscillating* mode ``1 − β`` grows by ``step`` per
decision (momentum falls); in *aligned* mode it shrinks (momentum rises), unless activation
saturation (``saturation.max`` above ``saturation_limit``) says the network is already
being pushed hard, in which case momentum is not raised. ``1 − β`` stays within
``[(1 − β0)/range, (1 − β0)·range]`` of the group's base β0 (0.9 → [0.8, 0.95] by default).
Groups without momentum (plain SGD, Adagrad, base momentum 0) are left alone.

``OneCycleMomentum`` is the other, open-loop momentum rule: it cycles momentum/β1
inversely to a one-cycle learning rate, step for step as torch's ``OneCycleLR`` does with
``cycle_momentum=True`` (its default), through value proposals like any controller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cadence.checks import check_float, check_int
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals
from cadence.schedules import OneCycle

__all__ = ["MomentumControl", "OneCycleMomentum"]


@CONTROLLERS.register("momentum")
class MomentumControl(Controller):
    """Adjust momentum/β1 from the alignment of consecutive gradients (bounded, hysteretic)."""

    name = "momentum"
    requires = ("grad_alignment",)

    def __init__(
        self,
        low: float = -0.1,
        high: float = 0.3,
        patience: int = 3,
        step: float = 1.05,
        range: float = 2.0,  # noqa: A002 - the natural name for a bound ratio
        saturation_limit: float = 0.2,
    ) -> None:
        if not -1 <= low < high <= 1:
            raise ValueError(f"need -1 <= low < high <= 1, got low={low!r}, high={high!r}")
        self.low, self.high = float(low), float(high)
        self.patience = check_int("patience", patience)
        self.step = check_float("step", step, 1.0, low_open=True)
        self.range = check_float("range", range, 1.0, low_open=True)
        self.saturation_limit = float(saturation_limit)
        self._mode = 0
        self._band = 0
        self._run = 0
        self._target: dict[str, float] = {}

    def _update_mode(self, cos: float) -> None:
        band = -1 if cos < self.low else (1 if cos > self.high else 0)
        self._run = self._run + 1 if band == self._band else 1
        self._band = band
        if self._run >= self.patience:
            self._mode = band

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        if "grad_alignment.ema" not in signals or context.in_warmup:
            return []
        cos = float(signals["grad_alignment.ema"])
        self._update_mode(cos)
        mode = self._mode
        saturated = float(signals.get("saturation.max", 0.0)) > self.saturation_limit
        if mode == 1 and saturated:
            mode = 0
        proposals = []
        for g in context.groups:
            base = g.base.get("momentum", g.values.get("momentum"))
            current = g.values.get("momentum")
            if base is None or current is None or base <= 0.0 or base >= 1.0:
                continue
            gap = self._target.get(g.name, 1.0 - current)
            lo, hi = (1.0 - base) / self.range, min((1.0 - base) * self.range, 0.5)
            if mode == -1:
                gap *= self.step
            elif mode == 1:
                gap /= self.step
            gap = min(max(gap, lo), hi)
            self._target[g.name] = gap
            target = 1.0 - gap
            if abs(target - current) < 1e-4:
                continue
            if mode == -1:
                why = f"consecutive gradients anti-aligned (smoothed cos {cos:+.2f} < {self.low})"
            elif mode == 1:
                why = f"consecutive gradients aligned (smoothed cos {cos:+.2f} > {self.high})"
            else:
                why = f"holding momentum target (smoothed cos {cos:+.2f}" + (
                    ", activations saturated)" if saturated else ")")
            reason = f"{why} → momentum {current:.4f} → {target:.4f} for {g.name}"
            proposals.append(Proposal("momentum", value=target, group=g.name, reason=reason,
                                      source=self.name))
        return proposals

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self._mode, "band": self._band, "run": self._run,
                "target": dict(self._target)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._mode, self._band, self._run = int(state["mode"]), int(state["band"]), int(
            state["run"])
        self._target = {k: float(v) for k, v in state["target"].items()}


@CONTROLLERS.register("one_cycle_momentum")
class OneCycleMomentum(Controller):
    """Cycle momentum (SGD) or β1 (Adam) inversely to a one-cycle lr, as ``OneCycleLR``.

    Proposes, at update ``t``, the value ``OneCycle(...).momentum_at(t, base_momentum,
    max_momentum)`` for every group that has momentum: ``max_momentum`` at the start, down
    to ``base_momentum`` at the lr's peak, back to ``max_momentum`` at the end (torch's
    defaults, 0.85 and 0.95). The arguments up to ``three_phase`` are ``OneCycle``'s
    (``total_steps=None``: the Regime's); build it from the lr schedule with
    :meth:`for_schedule` so both cycles share their phases.

    To follow torch from the first update, give the optimizer β1 (or momentum) =
    ``max_momentum``, the value ``OneCycleLR`` writes when it is built: the arbiter moves a
    momentum by at most ``max_change`` of ``1 − β`` per step, so starting from 0.9 the
    first steps ramp towards 0.95 instead of jumping there. The same clamp makes the cycle
    lag torch's when a phase is shorter than about 20 updates (``1 − β`` then has to move by
    more than 10 % per step, with the default ``max_change=1.1``). Groups whose base momentum is 0
    (plain SGD) are left alone: the user chose no momentum (torch would cycle them too).
    """

    name = "one_cycle_momentum"

    def __init__(
        self,
        total_steps: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        three_phase: bool = False,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
    ) -> None:
        self.total_steps = None if total_steps is None else check_int("total_steps", total_steps)
        self.pct_start, self.anneal_strategy, self.three_phase = (
            pct_start, anneal_strategy, three_phase)
        self.base_momentum = check_float("base_momentum", base_momentum, 0.0, 1.0,
                                         high_open=True)
        self.max_momentum = check_float("max_momentum", max_momentum, 0.0, 1.0, high_open=True)
        if self.base_momentum > self.max_momentum:
            raise ValueError(f"need base_momentum <= max_momentum, got {base_momentum!r} > "
                             f"{max_momentum!r}")
        self._cycle: OneCycle | None = None
        if self.total_steps is not None:
            self._cycle = self._make_cycle(self.total_steps)

    def _make_cycle(self, total: int) -> OneCycle:
        return OneCycle(total, self.pct_start, self.anneal_strategy,
                        three_phase=self.three_phase)

    @classmethod
    def for_schedule(cls, schedule: OneCycle, base_momentum: float = 0.85,
                     max_momentum: float = 0.95) -> OneCycleMomentum:
        """The momentum cycle that goes with the one-cycle lr ``schedule``."""
        if not isinstance(schedule, OneCycle):
            raise TypeError(f"schedule must be a OneCycle, got {type(schedule).__name__}")
        return cls(schedule.total_steps, schedule.pct_start, schedule.anneal_strategy,
                   schedule.three_phase, base_momentum, max_momentum)

    def cycle(self, total_steps: int | None = None) -> OneCycle:
        """The one-cycle shape followed: built from ``total_steps`` given here, else from
        the Regime's (``Context.total_steps``, passed as ``total_steps``)."""
        if self._cycle is None:
            if total_steps is None:
                raise ValueError(
                    "one_cycle_momentum needs total_steps: give it to the controller or "
                    "Regime(optimizer, total_steps=N)")
            self._cycle = self._make_cycle(total_steps)
        return self._cycle

    def momentum_at(self, step: int) -> float:
        return self.cycle().momentum_at(step, self.base_momentum, self.max_momentum)

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        cycle = self.cycle(context.total_steps)
        target = cycle.momentum_at(context.step, self.base_momentum, self.max_momentum)
        i, _ = cycle.position(context.step)
        phase = ("lr rising: momentum falls", "lr falling: momentum rises",
                 "last phase: momentum held")[i]
        out = []
        for g in context.groups:
            base = g.base.get("momentum")
            current = g.values.get("momentum")
            if base is None or current is None or base <= 0.0 or current == target:
                continue
            out.append(Proposal(
                "momentum", value=target, group=g.name, source=self.name,
                reason=f"one-cycle step {context.step} ({phase}) → momentum {current:.4f} → "
                       f"{target:.4f} for {g.name}"))
        return out
