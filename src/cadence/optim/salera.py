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

__all__ = ["SALeRA", "PageHinkley", "alera_reference"]


def alera_reference(alpha: float, t: int) -> float:
    """Expected ``|p|²`` after ``t`` i.i.d. random unit steps of the path with rate ``alpha``."""
    return alpha / (2.0 - alpha) * (1.0 - (1.0 - alpha) ** (2 * t))


class PageHinkley:
    """Page-Hinkley test for an upward jump of a noisy loss stream.

    The loss is first relaxed (running mean for the first ``1/rate`` values, then an EMA of
    rate ``rate``). With ``m`` the running mean of the relaxed loss, ``U += relaxed − m``
    and ``M = min(M, U)``; an alarm fires when ``U − M > threshold``. A non-finite loss
    alarms at once. ``threshold=None`` uses 0.1 × |first loss|, as the authors' code.
    """

    def __init__(self, threshold: float | None = None, rate: float = 0.01) -> None:
        if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold must be None or a finite number > 0, got {threshold!r}")
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {rate!r}")
        self.threshold = threshold
        self.rate = rate
        self.reset()

    def reset(self) -> None:
        """Forget the stream (after an alarm); the threshold is kept."""
        self.count = 0
        self.relaxed = 0.0
        self.mean = 0.0
        self.cusum = 0.0
        self.minimum = 0.0

    def update(self, loss: float) -> bool:
        """Fold in one loss value; True when a jump is detected."""
        loss = float(loss)
        if not math.isfinite(loss):
            return True
        if self.threshold is None:
            self.threshold = 0.1 * abs(loss) if loss != 0 else 1e-3
        self.count += 1
        weight = max(1.0 / self.count, self.rate)
        self.relaxed += weight * (loss - self.relaxed)
        self.mean += (self.relaxed - self.mean) / self.count
        self.cusum += self.relaxed - self.mean
        self.minimum = min(self.minimum, self.cusum)
        return self.cusum - self.minimum > self.threshold

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in
                ("threshold", "rate", "count", "relaxed", "mean", "cusum", "minimum")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


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
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if not (math.isfinite(adapt_rate) and adapt_rate >= 0):
            raise ValueError(f"adapt_rate must be a finite number >= 0, got {adapt_rate!r}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
        defaults = dict(lr=lr, alpha=alpha, adapt_rate=adapt_rate, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.detector = PageHinkley(ph_threshold, ph_rate)
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
        z = (sq - alera_reference(alpha, group["alera_steps"])) / (alpha / math.sqrt(n))
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
