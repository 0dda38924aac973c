"""Read-only tensor reductions shared by the signals.

They cope with the awkward cases once: parameters without gradients, sparse gradients
(``nn.Embedding(sparse=True)``), bf16 tensors and empty groups. Scalar statistics (EMAs,
running moments, detectors) are in ``cadence.stats``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from cadence.stats import finite


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


def optimizer_state(optimizer: Any, p: torch.Tensor) -> dict[str, Any]:
    """The optimizer's per-parameter state dict for ``p`` (empty if none or no optimizer)."""
    state = getattr(optimizer, "state", None)
    if state is None:
        return {}
    try:
        return state.get(p, {}) if hasattr(state, "get") else {}
    except TypeError:
        return {}
