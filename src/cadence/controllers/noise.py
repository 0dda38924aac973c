"""Noise-adaptive step size: more gradient noise than usual → a more conservative lr.

Rule (McCandlish et al. 2018): the best SGD step for batch B scales as
``η_opt ∝ 1 / (1 + B_noise/B)``. With ``s = tr(Σ_B)/|G|²`` (the ``grad_noise`` signal, which
is B_simple/B) and ``s_ref`` its long-run mean, the lr multiplier this controller aims for
is ``(1 + s_ref) / (1 + s)``: 1 when the noise is at its usual level, below 1 when the
gradient is noisier than usual, and (if the upper bound allows) above 1 when cleaner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cadence.checks import check_beta
from cadence.controllers._follow import Follower, fmt
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals
from cadence.stats import Ema

__all__ = ["NoiseAdaptiveLR"]


@CONTROLLERS.register("noise_lr")
class NoiseAdaptiveLR(Controller):
    """Scale every group's lr by ``(1 + s_ref)/(1 + s)``, smoothed and bounded.

    Parameters: ``bounds`` on this controller's own lr multiplier (default 0.3–1.0: it only
    ever makes the lr more conservative), ``max_step`` per decision (×1.02), ``deadband``
    (5 %: smaller target changes are ignored), ``beta`` (EMA of the target over decisions).
    Silent during warmup and until the noise estimate is valid.
    """

    name = "noise_lr"
    requires = ("grad_noise",)

    def __init__(
        self,
        bounds: tuple[float, float] = (0.3, 1.0),
        max_step: float = 1.02,
        deadband: float = 0.05,
        beta: float = 0.8,
    ) -> None:
        self.follower = Follower(bounds, max_step=max_step, deadband=deadband)
        self.beta = check_beta("beta", beta)
        self._target = Ema(self.beta)

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        if context.in_warmup or signals.get("grad_noise.valid", 0.0) <= 0.0:
            return []
        s = float(signals.get("grad_noise", 0.0))
        s_ref = float(signals.get("grad_noise.long", 0.0))
        if s_ref <= 0.0 or s < 0.0:
            return []
        target = self._target.update((1.0 + s_ref) / (1.0 + s))
        factor = self.follower.move("", target)
        if factor is None:
            return []
        mult = self.follower.get("")
        more = "above" if s > s_ref else "below"
        reason = (
            f"grad noise scale {fmt(s)} is {s / s_ref:.2f}× its long-run mean {fmt(s_ref)} "
            f"({more}) → lr ×{factor:.3f} (noise multiplier now {mult:.2f}, target "
            f"{target:.2f})"
        )
        return [Proposal("lr", factor=factor, reason=reason, source=self.name)]

    def state_dict(self) -> dict[str, Any]:
        return {"follower": self.follower.state_dict(), "target": self._target.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.follower.load_state_dict(state["follower"])
        self._target.load_state_dict(state["target"])
