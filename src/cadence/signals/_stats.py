"""Small running statistics and tensor helpers shared by the signals and controllers.

Everything here is scalar bookkeeping (EMAs, running mean/variance) or read-only tensor
reductions that cope with the awkward cases once: parameters without gradients, sparse
gradients (``nn.Embedding(sparse=True)``), bf16 tensors and empty groups.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch


def check_beta(name: str, beta: float) -> float:
    """Validate a decay factor in [0, 1)."""
    if not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {beta!r}")
    return float(beta)


def check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def finite(x: float, default: float = 0.0) -> float:
    """``x`` if it is a finite float, else ``default`` (keeps NaN out of packed signals)."""
    x = float(x)
    return x if math.isfinite(x) else default


class Ema:
    """Bias-corrected exponential moving average of a scalar (Adam-style correction)."""

    def __init__(self, beta: float) -> None:
        self.beta = check_beta("beta", beta)
        self.raw = 0.0
        self.count = 0

    def update(self, x: float) -> float:
        self.count += 1
        self.raw = self.beta * self.raw + (1.0 - self.beta) * float(x)
        return self.value

    @property
    def value(self) -> float:
        if self.count == 0:
            return 0.0
        return self.raw / (1.0 - self.beta**self.count)

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "raw": self.raw, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state.get("beta", self.beta))
        self.raw = float(state["raw"])
        self.count = int(state["count"])


class EmaMoments:
    """Exponentially weighted mean and variance of a scalar (West's incremental form).

    Starts from the first sample, so there is no start-up bias in the mean.
    """

    def __init__(self, beta: float) -> None:
        self.beta = check_beta("beta", beta)
        self.mean = 0.0
        self.var = 0.0
        self.count = 0

    def update(self, x: float) -> None:
        x = float(x)
        self.count += 1
        if self.count == 1:
            self.mean, self.var = x, 0.0
            return
        alpha = 1.0 - self.beta
        diff = x - self.mean
        incr = alpha * diff
        self.mean += incr
        self.var = (1.0 - alpha) * (self.var + diff * incr)

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def zscore(self, x: float, floor: float = 1e-12) -> float:
        """Standardised distance of ``x`` from the running mean (0 before two samples)."""
        if self.count < 2:
            return 0.0
        return (float(x) - self.mean) / max(self.std, floor, 1e-3 * abs(self.mean))

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = float(state["mean"])
        self.var = float(state["var"])
        self.count = int(state["count"])


def dense_grad(p: torch.Tensor) -> torch.Tensor | None:
    """The gradient of ``p`` as a dense-or-values tensor, ``None`` if there is none.

    Sparse gradients are coalesced and their stored values returned: every norm and dot
    product of a sparse gradient with itself only needs those.
    """
    g = p.grad
    if g is None:
        return None
    if g.is_sparse:
        return g.coalesce().values()
    return g


def sq_norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of squared L2 norms of ``tensors``, in float32 (0-d tensor; 0 for none)."""
    if not tensors:
        return torch.zeros(())
    norms = torch._foreach_norm(list(tensors), 2, dtype=torch.float32)
    return torch.stack([n.to("cpu", non_blocking=True) for n in norms]).square().sum()


def group_grad_sq_norms(params_by_group: dict[str, list[Any]]) -> dict[str, float]:
    """Squared gradient norm of each group; frozen or unused tensors (no grad) count as 0."""
    names = list(params_by_group)
    totals = []
    for name in names:
        grads = [g for g in (dense_grad(p) for p in params_by_group[name]) if g is not None]
        totals.append(sq_norms([g for g in grads if g.numel() > 0]))
    if not totals:
        return {}
    values = torch.stack(totals).tolist()
    return {name: finite(v) for name, v in zip(names, values, strict=True)}


def cosine_table(
    name: str,
    groups: Sequence[str],
    table: Iterable[Sequence[float]],
) -> dict[str, float]:
    """Cosines from per-group dot products: row ``i`` of ``table`` is ``(a·b, |a|², |b|²)``
    for ``groups[i]``.

    Keys: ``{name}/{group}`` per group, ``name`` with the three terms summed over all
    groups, and ``{name}.valid`` (1.0 when that pooled denominator is finite and > 0: an
    overflowed norm says nothing about direction). A cosine whose denominator is 0 reads 0.0.
    """
    out: dict[str, float] = {}
    tot = [0.0, 0.0, 0.0]
    for group, (dot, aa, bb) in zip(groups, table, strict=True):
        denom = math.sqrt(aa * bb)
        out[f"{name}/{group}"] = finite(dot / denom) if denom > 0 else 0.0
        tot = [tot[0] + dot, tot[1] + aa, tot[2] + bb]
    denom = math.sqrt(tot[1] * tot[2])
    valid = denom > 0 and math.isfinite(denom)
    out[name] = finite(tot[0] / denom) if valid else 0.0
    out[f"{name}.valid"] = 1.0 if valid else 0.0
    return out


def numel(params: Iterable[torch.Tensor]) -> int:
    return sum(int(p.numel()) for p in params)


def optimizer_state(optimizer: Any, p: torch.Tensor) -> dict[str, Any]:
    """The optimizer's per-parameter state dict for ``p`` (empty if none or no optimizer)."""
    state = getattr(optimizer, "state", None)
    if state is None:
        return {}
    try:
        return state.get(p, {}) if hasattr(state, "get") else {}
    except TypeError:
        return {}


class SignalBase:
    """Defaults for the Signal protocol: pass-through ``update`` and empty state."""

    name: str = ""
    every: int = 1

    def measure(self, ctx: Any) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        return dict(reduced)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
