"""SALeRA as a controller (the 2017 scheme CLARA revisits), for comparison.

Per group (per layer with layer-wise groups), the ``salera_path`` signal gives the ALeRA
z-score of the path of unit-normalised gradients; the controller proposes
``lr × exp(C · z)``. A Page-Hinkley test on the loss halves every group's rate at once
(an urgent proposal) when the loss jumps. Restoring the previous weights, the other half
of the safeguard, is the Regime guard's job (a controller never touches parameters); the
drop-in ``cadence.optim.SALeRA`` does both itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cadence.checks import check_float
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals
from cadence.stats import SaleraPageHinkley

__all__ = ["SaleraController"]


@CONTROLLERS.register("salera")
class SaleraController(Controller):
    """Per-group ALeRA factors plus a Page-Hinkley halving on loss jumps.

    Args:
        adapt_rate: C in ``exp(C · z)``.
        alpha: path rate, forwarded to the ``salera_path`` signal via ``signal_options``.
        ph_threshold, ph_rate: Page-Hinkley settings (``None``: 0.1 × first loss).
        name: event source.
    """

    name = "salera"
    requires = ("salera_path", "loss")

    def __init__(self, adapt_rate: float = 1e-4, alpha: float = 0.01,
                 ph_threshold: float | None = None, ph_rate: float = 0.01,
                 name: str = "salera") -> None:
        self.name = name
        self.adapt_rate = check_float("adapt_rate", adapt_rate, 0.0)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0, low_open=True)
        self.detector = SaleraPageHinkley(ph_threshold, ph_rate)  # learns its threshold
        self.alarms = 0
        self.signal_options = {"salera_path": {"alpha": self.alpha}}

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        loss = signals.get("loss")
        if loss is not None and self.detector.update(loss):
            self.detector.reset()
            self.alarms += 1
            return [Proposal(knob="lr", factor=0.5, source=self.name, urgent=True,
                             reason=f"Page-Hinkley alarm: loss jumped to {loss:.4g}")]
        out = []
        for group in context.group_names():
            z = signals.get(f"salera_path/{group}")
            if z is None or not math.isfinite(z) or z == 0.0:
                continue
            factor = math.exp(max(-50.0, min(50.0, self.adapt_rate * z)))
            out.append(Proposal(knob="lr", factor=factor, group=group, source=self.name,
                                reason=f"gradient path z-score {z:+.2f}"))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"page_hinkley": self.detector.state_dict(), "alarms": self.alarms}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.detector.load_state_dict(state["page_hinkley"])
        self.alarms = int(state["alarms"])
