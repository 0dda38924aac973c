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
from typing import Any

from cadence.optim.clara import DEFAULT_DAMPING
from cadence.protocol import CONTROLLERS, Context, Proposal, Signals

__all__ = ["ClaraController"]


@CONTROLLERS.register("clara")
class ClaraController:
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

    requires: tuple[str, ...] = ("clara_path",)

    def __init__(
        self,
        damping: float = DEFAULT_DAMPING,
        c: float = 0.2,
        beta: float | None = None,
        per_group: bool = False,
        name: str = "clara",
    ) -> None:
        if not isinstance(damping, (int, float)) or not math.isfinite(damping) or damping < 0:
            raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
        if not isinstance(c, (int, float)) or not 0.0 < c <= 1.0:
            raise ValueError(f"c must be a number in (0, 1], got {c!r}")
        if beta is not None and not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be None or in [0, 1), got {beta!r}")
        self.name = name
        self.damping = float(damping)
        self.c = float(c)
        self.beta = beta
        self.per_group = bool(per_group)
        #: keyword arguments for the signals this controller requires (read by the Regime)
        self.signal_options: dict[str, dict[str, Any]] = {"clara_path": {"c": self.c,
                                                                         "beta": beta}}

    def get_config(self) -> dict[str, Any]:
        return {"damping": self.damping, "c": self.c, "beta": self.beta,
                "per_group": self.per_group}

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
        return out

    def state_dict(self) -> dict[str, Any]:
        return {}  # stateless: the path lives in the clara_path signal

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
