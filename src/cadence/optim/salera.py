"""SALeRA (Schoenauer-Sebag, Schoenauer & Sebag, arXiv 1709.01427): the 2017 scheme CLARA
revisits, kept as a comparison point.

* **ALeRA**, per layer (here: per param group): a slow path of unit-normalised *gradients*
  ``p ← (1 − α) p + α g/|g|`` is compared with its random-walk mean
  ``μ_t = α/(2 − α)·(1 − (1 − α)^{2t})`` as a z-score with spread ``σ = α/√n``;
  the rate becomes ``lr · exp(C · z)`` *before* the SGD step.
* **Page-Hinkley safeguard** on the loss: on a detected upward jump the weights go back to
  the previous step's, every rate is halved and the test restarts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from cadence.checks import check_float
from cadence.stats import SaleraPageHinkley, alera_reference, alera_zscore

__all__ = ["SALeRA", "PageHinkley", "alera_reference"]


#: The SALeRA safeguard, under the name this module has always exported.
PageHinkley = SaleraPageHinkley


class SALeRA(Optimizer):
    """SGD with ALeRA per-group rates and the Page-Hinkley safeguard.

    Pass the minibatch loss to every step, ``opt.step(loss=loss.item())`` (or a closure):
    on an alarm the step is not taken, the parameters return to the values they had before
    the previous step, and every group's lr is halved. Without a loss the safeguard is off.

    Args:
        params: tensors or param groups (one group per layer gives per-layer rates).
        lr: initial rate of every group.
        alpha: path rate (memory about ``1/alpha`` steps).
        adapt_rate: ``C`` in ``lr ← lr · exp(C · z)``; ``z`` grows like ``√n``, so large
            groups react faster (a property of the 2017 scheme).
        weight_decay: coupled L2 coefficient.
        ph_threshold, ph_rate: Page-Hinkley threshold (``None``: 0.1 × first loss) and
            loss relaxation rate.
    """

    #: it writes its own ``group["lr"]`` every step (a Regime refuses to drive it)
    adapts_lr = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        alpha: float = 0.01,
        adapt_rate: float = 1e-4,
        weight_decay: float = 0.0,
        ph_threshold: float | None = None,
        ph_rate: float = 0.01,
    ) -> None:
        check_float("lr", lr, 0.0, low_open=True)
        check_float("alpha", alpha, 0.0, 1.0, low_open=True)
        check_float("adapt_rate", adapt_rate, 0.0)
        check_float("weight_decay", weight_decay, 0.0)
        defaults = dict(lr=lr, alpha=alpha, adapt_rate=adapt_rate, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.detector = SaleraPageHinkley(ph_threshold, ph_rate)
        self.alarms = 0

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], Any] | None = None, *, loss: float | None = None
    ) -> Any:
        """Adapt every group's rate, then take the SGD step (or back off on an alarm)."""
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if loss is not None and self.detector.update(float(loss)):
            self._back_off()
            return loss
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None and p.requires_grad]
            if not params:
                continue
            grads = []
            for p in params:
                if p.grad.is_sparse:
                    raise TypeError("SALeRA does not support sparse gradients")
                g = p.grad
                if group["weight_decay"] != 0:
                    g = g.add(p, alpha=group["weight_decay"])
                grads.append(g)
                self.state[p]["previous"] = p.detach().clone()
            self._adapt(group, params, grads)
            for p, g in zip(params, grads, strict=True):
                p.add_(g, alpha=-group["lr"])
        return loss

    def _adapt(self, group: dict[str, Any], params: list[Any], grads: list[Any]) -> None:
        alpha = group["alpha"]
        norm = math.sqrt(sum(float(torch.sum(g.double() * g.double())) for g in grads))
        sq = 0.0
        for p, g in zip(params, grads, strict=True):
            state = self.state[p]
            if "path" not in state:
                state["path"] = torch.zeros_like(p)
            path = state["path"].mul_(1.0 - alpha)
            if norm > 0:
                path.add_(g, alpha=alpha / norm)
            sq += float(torch.sum(path.double() ** 2))
        group["alera_steps"] = group.get("alera_steps", 0) + 1
        n = sum(p.numel() for p in params)
        z = alera_zscore(sq, alpha, group["alera_steps"], n)
        group["lr"] = group["lr"] * math.exp(group["adapt_rate"] * z)

    def _back_off(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                previous = self.state.get(p, {}).get("previous")
                if previous is not None:
                    p.copy_(previous)
            group["lr"] = group["lr"] * 0.5
        self.detector.reset()
        self.alarms += 1

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["page_hinkley"] = self.detector.state_dict()
        state["alarms"] = self.alarms
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.detector.load_state_dict(state_dict.pop("page_hinkley"))
        self.alarms = int(state_dict.pop("alarms"))
        super().load_state_dict(state_dict)
