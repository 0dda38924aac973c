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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cadence.checks import check_float, check_int
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals

__all__ = ["MomentumControl"]


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
