"""CLARA as a controller: adapt the learning rate of any torch optimizer from the path
length of its actual updates (cumulative path-length adaptation, arXiv 2508.05408).

Reads the ``clara_path`` signal (see ``cadence.signals.path``), which cumulates each
tensor's unit-normalised update and compares it with the random-walk reference for the
optimizer's momentum / beta1 (so SGD, momentum SGD and Adam are told apart from the
optimizer itself). Each step it proposes the factor ``exp(d · (rho − 1))`` for every
group: > 1 while updates keep the same direction, < 1 while they cancel, 1 on pure noise.
The drop-in optimizers ``cadence.optim.ClaraSGD`` / ``ClaraAdam`` apply the same rule
inside ``step()``; here it is one step later (the update of step t is seen at step t + 1).
"""

from __future__ import annotations

import math

from cadence.checks import check_beta, check_float
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals
from cadence.stats import CLARA_DAMPING

__all__ = ["ClaraController"]


@CONTROLLERS.register("clara")
class ClaraController(Controller):
    """Propose ``lr × exp(d (rho − 1))`` from the ``clara_path`` ratio.

    Args:
        damping: gain ``d`` (the paper uses 1e-3 everywhere).
        c: path cumulation constant, forwarded to the ``clara_path`` signal through
            ``signal_options``.
        beta: momentum/beta1 used for the reference; ``None`` reads it from the optimizer.
        per_group: one factor per group from that group's own ratio instead of one shared
            factor (the paper shares one).
        name: event source.
    """

    name = "clara"
    requires = ("clara_path",)

    def __init__(
        self,
        damping: float = CLARA_DAMPING,
        c: float = 0.2,
        beta: float | None = None,
        per_group: bool = False,
        name: str = "clara",
    ) -> None:
        self.name = name
        self.damping = check_float("damping", damping, 0.0)
        self.c = check_float("c", c, 0.0, 1.0, low_open=True)
        self.beta = None if beta is None else check_beta("beta", beta)
        self.per_group = bool(per_group)
        #: keyword arguments for the signals this controller requires (read by the Regime)
        self.signal_options = {"clara_path": {"c": self.c, "beta": self.beta}}

    def _proposal(self, rho: float, group: str | None) -> Proposal:
        factor = math.exp(self.damping * (rho - 1.0))
        trend = "aligned, lengthen" if rho > 1 else "cancelling, shorten"
        return Proposal(knob="lr", factor=factor, group=group, source=self.name,
                        reason=f"path ratio {rho:.3f} (steps {trend})")

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        if signals.get("clara_path.valid", 0.0) <= 0.0 or self.damping == 0.0:
            return []
        if not self.per_group:
            rho = signals.get("clara_path")
            return [] if rho is None or not math.isfinite(rho) else [self._proposal(rho, None)]
        out = []
        for group in context.group_names():
            rho = signals.get(f"clara_path/{group}")
            if rho is not None and math.isfinite(rho):
                out.append(self._proposal(rho, group))
        return out  # stateless: the path lives in the clara_path signal
