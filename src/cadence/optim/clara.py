"""CLARA: cumulative path-length learning-rate adaptation for SGD and Adam (arXiv 2508.05408).

Every parameter tensor keeps a discounted path of its *unit-normalised step directions*,
``p_i <- (1 - c) p_i + c u_i``. If successive steps were independent noise, the expected
squared path length of one tensor would be ``reference_mu(c, beta)`` (the random-walk
reference; ``beta`` is the momentum / Adam beta1 that correlates successive steps). The
ratio ``rho = sum_i |p_i|^2 / sum_i mu_i`` is above 1 when steps keep pointing the same way
(the learning rate is too small) and below 1 when they cancel (too large); after every step
all groups' learning rates are multiplied by the same factor ``exp(d * (rho - 1))``.

The adapted rate lives in ``group["lr"]``, as in any torch optimizer, so torch schedulers
that *multiply* the rate and any monitoring see it. Equations and deviations from the
authors' code are in docs/clara.md; ``cadence.optim.reference`` holds a float64 for-loop
transcription the tests compare against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from cadence.checks import check_beta, check_float
from cadence.stats import CLARA_DAMPING, random_walk_std, reference_mu

__all__ = ["ClaraSGD", "ClaraAdam", "reference_mu", "random_walk_std", "VARIANTS"]

#: ``"adapted"``: the usual SGD/Adam step with the adapted lr; ``"unit"``: every tensor
#: moves by exactly ``lr`` along its unit-normalised step direction.
VARIANTS: tuple[str, ...] = ("adapted", "unit")

def _check_common(lr: float, c: float, damping: float | None, variant: str, wd: float) -> float:
    check_float("lr", lr, 0.0)
    check_float("c", c, 0.0, 1.0, low_open=True)
    d = check_float("damping", CLARA_DAMPING if damping is None else damping, 0.0)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    check_float("weight_decay", wd, 0.0)
    return d


class _Clara(Optimizer):
    """Shared CLARA loop: subclasses give the step direction and its momentum coefficient."""

    #: it writes its own ``group["lr"]`` every step (a Regime refuses to drive it)
    adapts_lr = True

    last_ratio: float | None
    last_factor: float | None

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)
        self.last_ratio = None   # rho of the latest step (diagnostics only)
        self.last_factor = None  # lr factor applied after the latest step

    def _beta(self, group: dict[str, Any]) -> float:
        raise NotImplementedError

    def _direction(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict) -> Tensor:
        """The un-normalised step direction (the optimizer moves by ``-lr * direction``)."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One update of every tensor with a gradient, then one shared lr factor."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        dampings = {group["damping"] for group in self.param_groups}
        if len(dampings) > 1:
            raise ValueError(f"all param groups must share one damping, got {sorted(dampings)}")

        squares: list[Tensor] = []
        references: list[Tensor] = []
        for group in self.param_groups:
            mu = reference_mu(group["c"], self._beta(group))
            c, lr = group["c"], group["lr"]
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue  # frozen or unused this step: no step, not counted in the reference
                if p.grad.is_sparse:
                    raise TypeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if "path" not in state:
                    state["path"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                direction = self._direction(p, p.grad, group, state)
                acc = torch.promote_types(direction.dtype, torch.float32)
                norm = torch.linalg.vector_norm(direction, dtype=acc)
                unit = (direction.to(acc) / norm.clamp_min(torch.finfo(acc).tiny)).to(p.dtype)
                if group["variant"] == "unit":
                    p.add_(unit, alpha=-lr)
                else:
                    p.add_(direction, alpha=-lr)
                # A zero direction carries no information: its path neither decays nor counts.
                moved = norm > 0
                path = state["path"]
                path.mul_(1.0 - c * moved.to(path.dtype)).add_(unit, alpha=c)
                sq = torch.linalg.vector_norm(path, dtype=torch.float64).square()
                squares.append(torch.where(moved, sq, 0.0))
                references.append(moved.to(torch.float64) * mu)

        if not squares:
            return loss
        total, reference = torch.stack([torch.stack(squares).sum(),
                                        torch.stack(references).sum()]).tolist()  # one sync
        if reference == 0:
            return loss
        ratio = total / reference
        factor = math.exp(dampings.pop() * (ratio - 1.0))
        for group in self.param_groups:
            group["lr"] = group["lr"] * factor
        self.last_ratio, self.last_factor = ratio, factor
        return loss


class ClaraSGD(_Clara):
    """SGD (optionally heavy-ball momentum and coupled L2 decay, as ``torch.optim.SGD``) whose
    learning rate CLARA adapts after every step.

    Args:
        params: tensors or param-group dicts, as for any torch optimizer.
        lr: initial learning rate (in the ``"unit"`` variant: the length of every tensor's step).
        momentum: heavy-ball coefficient (torch convention, no dampening); the path cumulates
            the momentum buffer's direction and the reference accounts for its correlation.
        weight_decay: coupled L2 coefficient added to the gradient.
        c: cumulation constant of the path (memory about ``1/c`` steps).
        damping: gain ``d`` of ``lr <- lr * exp(d (rho - 1))``; ``None`` means 1e-3.
        variant: ``"adapted"`` (SGD step with the adapted lr) or ``"unit"`` (per-tensor
            normalised step of length ``lr``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        c: float = 0.2,
        damping: float | None = None,
        variant: str = "adapted",
    ) -> None:
        d = _check_common(lr, c, damping, variant, weight_decay)
        check_beta("momentum", momentum)
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, c=c, damping=d,
                        variant=variant)
        super().__init__(params, defaults)

    def _beta(self, group: dict[str, Any]) -> float:
        return float(group["momentum"])

    def _direction(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict) -> Tensor:
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        if group["momentum"] == 0:
            return grad
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = grad.detach().clone()
        else:
            buf.mul_(group["momentum"]).add_(grad)
        return buf


class ClaraAdam(_Clara):
    """Adam whose learning rate CLARA adapts, in the corrected form: the path cumulates the
    unit-normalised *Adam step* ``m_hat / (sqrt(v_hat) + eps)`` and is compared with the
    random-walk reference of that step, ``reference_mu(c, beta1)``.

    Args:
        params: tensors or param-group dicts.
        lr: initial learning rate (in the ``"unit"`` variant: the length of every tensor's step).
        betas, eps: Adam's moment decays and denominator floor (torch convention).
        weight_decay: L2 coefficient; coupled (added to the gradient, like ``torch.optim.Adam``)
            unless ``decoupled_weight_decay`` (AdamW: ``theta *= 1 - lr * weight_decay``).
        c, damping, variant: as in :class:`ClaraSGD`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        c: float = 0.2,
        damping: float | None = None,
        variant: str = "adapted",
        decoupled_weight_decay: bool = False,
    ) -> None:
        d = _check_common(lr, c, damping, variant, weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        check_beta("betas[0]", betas[0])
        check_beta("betas[1]", betas[1])
        check_float("eps", eps, 0.0)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, c=c,
                        damping=d, variant=variant, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _beta(self, group: dict[str, Any]) -> float:
        return float(group["betas"][0])

    def _direction(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict) -> Tensor:
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        if wd != 0:
            if group["decoupled_weight_decay"]:
                p.mul_(1.0 - group["lr"] * wd)
            else:
                grad = grad.add(p, alpha=wd)
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(grad, 1.0 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = (v / (1.0 - beta2**t)).sqrt_().add_(group["eps"])
        return (m / (1.0 - beta1**t)).div_(denom)
