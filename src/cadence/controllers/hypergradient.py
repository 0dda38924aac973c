"""Hypergradient learning-rate adaptation (Baydin et al., ICLR 2018), multiplicative form.

The derivative of the loss at step t with respect to the previous step's learning rate is
``g_t · d_{t−1}`` (``d`` the previous update direction). The additive rule
``lr += β g_t·(−d_{t−1})`` needs a β matched to the gradient scale and can turn the rate
negative; here the rate is multiplied by ``1 + β · cos(g_t, −Δθ_{t−1})``, which is
scale-free and stays in ``[1 − β, 1 + β]`` with ``β < 1``, so the rate can never become
negative or non-finite. The ``update_alignment`` signal supplies the cosine for any
optimizer: with SGD it is SGD-HD (consecutive gradients), with Adam it is Adam-HD (the
gradient against Adam's previous direction).
"""

from __future__ import annotations

import math

from cadence.checks import check_float
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals

__all__ = ["HypergradientController", "multiplicative_factor"]


def multiplicative_factor(cosine: float, hyper_lr: float) -> float:
    """``1 + hyper_lr · cosine`` with the cosine clipped to [−1, 1] (1.0 if not finite)."""
    if not math.isfinite(cosine):
        return 1.0
    return 1.0 + hyper_lr * min(1.0, max(-1.0, cosine))


@CONTROLLERS.register("hypergradient")
class HypergradientController(Controller):
    """Propose ``lr × (1 + β cos(g_t, −Δθ_{t−1}))`` each step.

    Args:
        hyper_lr: β in [0, 1); the largest relative change per step.
        per_group: a factor per group from that group's own cosine (default: one global
            cosine, as the paper's single learning rate).
        name: event source.
    """

    name = "hypergradient"
    requires = ("update_alignment",)

    def __init__(self, hyper_lr: float = 0.02, per_group: bool = False,
                 name: str = "hypergradient") -> None:
        self.name = name
        self.hyper_lr = check_float("hyper_lr", hyper_lr, 0.0, 1.0, high_open=True)
        self.per_group = bool(per_group)

    def _proposal(self, cosine: float, group: str | None) -> Proposal:
        factor = multiplicative_factor(cosine, self.hyper_lr)
        verb = "lengthen" if cosine > 0 else "shorten"
        return Proposal(knob="lr", factor=factor, group=group, source=self.name,
                        reason=f"gradient vs previous update cosine {cosine:+.3f}: {verb}")

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        if signals.get("update_alignment.valid", 0.0) <= 0.0 or self.hyper_lr == 0.0:
            return []
        if not self.per_group:
            return [self._proposal(signals.get("update_alignment", 0.0), None)]
        return [self._proposal(signals[f"update_alignment/{g}"], g)
                for g in context.group_names() if f"update_alignment/{g}" in signals]
