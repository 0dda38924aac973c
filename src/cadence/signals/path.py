"""Signals about the path the parameters travel: CLARA's path ratio, the hypergradient
alignment and SALeRA's per-layer gradient path.

``clara_path`` and ``update_alignment`` look at the update the optimizer actually made,
``Δθ = θ_now − θ_at_previous_measure``, so they work over any torch optimizer (SGD,
momentum, Adam, AdamW …) without knowing its equations: they keep one parameter-sized
snapshot between steps. A step the Regime skipped leaves ``Δθ = 0`` and is ignored. Under
data parallelism parameters and (already all-reduced) gradients are identical on every
rank, so every rank computes the same numbers before the Regime's mean-reduction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from cadence.checks import check_beta, check_float, check_int
from cadence.protocol import SIGNALS, MeasureContext, Signal
from cadence.signals._stats import cosine_table
from cadence.stats import alera_zscore, finite, reference_mu

__all__ = ["ClaraPath", "UpdateAlignment", "SaleraPath", "optimizer_beta"]


def optimizer_beta(group: dict[str, Any]) -> float:
    """The coefficient that correlates successive steps of a torch param group: Adam-style
    ``betas[0]``, else SGD ``momentum``, else 0."""
    if "betas" in group:
        return float(group["betas"][0])
    return float(group.get("momentum", 0.0) or 0.0)


def _host(values: list[Tensor]) -> list[float]:
    """0-d tensors (any devices) to Python floats with one host transfer."""
    if not values:
        return []
    device = values[0].device
    return torch.stack([v.to(device, torch.float64) for v in values]).tolist()


class _UpdateTracker:
    """Remembers the parameters at the previous measure and returns what changed since."""

    def __init__(self) -> None:
        self.snapshot: dict[str, list[Tensor]] = {}

    def deltas(self, params_by_group: dict[str, list[Tensor]]) -> dict[str, list[Tensor | None]]:
        out: dict[str, list[Tensor | None]] = {}
        for group, params in params_by_group.items():
            old = self.snapshot.get(group)
            fresh = [p.detach().clone() for p in params]
            if old is None or len(old) != len(params):
                out[group] = [None] * len(params)
            else:
                out[group] = [
                    (new - prev) if new.shape == prev.shape else None
                    for new, prev in zip(fresh, old, strict=True)
                ]
            self.snapshot[group] = fresh
        return out

    def state_dict(self) -> dict[str, Any]:
        return {g: [t.clone() for t in ts] for g, ts in self.snapshot.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.snapshot = {g: [t.clone() for t in ts] for g, ts in state.items()}


@SIGNALS.register("clara_path")
class ClaraPath(Signal):
    """CLARA's path-length ratio of the actual updates (per tensor, as the paper).

    Every tensor keeps ``p ← (1 − c) p + c Δθ/|Δθ|``; the ratio
    ``rho = Σ|p_i|² / Σ μ_i`` compares it with the random-walk reference
    ``μ_i = reference_mu(c, β)``, where β is the momentum / Adam beta1 of the tensor's
    optimizer group (or ``beta`` if given). rho > 1: successive updates align (lr too
    small); rho < 1: they cancel (lr too large); 1 on pure noise.

    Keys: ``clara_path`` (all tensors), ``clara_path/{g}`` (per group), ``clara_path.valid``
    (1.0 when an update was seen this step; otherwise the ratios read 1.0, neutral).
    Cost: two parameter-sized copies (snapshot and path), a few reductions, one host sync.
    """

    name = "clara_path"

    def __init__(
        self, c: float = 0.2, beta: float | None = None, every: int = 1, name: str = "clara_path"
    ) -> None:
        self.name = name
        self.every = check_int("every", every)
        self.c = check_float("c", c, 0.0, 1.0, low_open=True)
        self.beta = None if beta is None else check_beta("beta", beta)
        self._tracker = _UpdateTracker()
        self._path: dict[str, list[Tensor | None]] = {}

    def _betas(self, optimizer: Any) -> dict[int, float]:
        if self.beta is not None or optimizer is None:
            return {}
        return {id(p): optimizer_beta(g) for g in optimizer.param_groups for p in g["params"]}

    @torch.no_grad()
    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        betas = self._betas(ctx.optimizer)
        deltas = self._tracker.deltas(ctx.params_by_group)
        groups = list(ctx.params_by_group)
        owners: list[tuple[str, float]] = []  # (group, mu) of every tensor that has a delta
        squares: list[Tensor] = []
        moves: list[Tensor] = []
        for group in groups:
            paths = self._path.get(group)
            if paths is None or len(paths) != len(deltas[group]):
                paths = self._path[group] = [None] * len(deltas[group])
            for i, (p, delta) in enumerate(zip(ctx.params_by_group[group], deltas[group],
                                               strict=True)):
                if delta is None:
                    continue
                beta = self.beta if self.beta is not None else betas.get(id(p), 0.0)
                acc = torch.promote_types(delta.dtype, torch.float32)
                delta = delta.to(acc)
                norm = torch.linalg.vector_norm(delta)
                moved = (norm > 0) & torch.isfinite(norm)
                unit = torch.where(moved, delta / norm.clamp_min(torch.finfo(acc).tiny), 0.0)
                path = paths[i]
                if path is None or path.shape != unit.shape:
                    path = paths[i] = torch.zeros_like(unit)
                path.mul_(1.0 - self.c * moved.to(acc)).add_(unit, alpha=self.c)
                squares.append(torch.linalg.vector_norm(path, dtype=torch.float64).square())
                moves.append(moved)
                owners.append((group, reference_mu(self.c, beta)))
        values = _host(squares + moves)
        sq_by = dict.fromkeys(groups, 0.0)
        ref_by = dict.fromkeys(groups, 0.0)
        for (group, mu), sq, moved in zip(owners, values[:len(owners)], values[len(owners):],
                                          strict=True):
            if moved:
                sq_by[group] += sq
                ref_by[group] += mu
        out: dict[str, float] = {}
        for group in groups:
            ok = ref_by[group] > 0
            out[f"{self.name}/{group}"] = finite(sq_by[group] / ref_by[group], 1.0) if ok else 1.0
        total_sq, total_ref = sum(sq_by.values()), sum(ref_by.values())
        out[self.name] = finite(total_sq / total_ref, 1.0) if total_ref > 0 else 1.0
        out[f"{self.name}.valid"] = 1.0 if total_ref > 0 else 0.0
        return out

    def state_dict(self) -> dict[str, Any]:
        paths = {g: [None if t is None else t.clone() for t in ts] for g, ts in self._path.items()}
        return {"snapshot": self._tracker.state_dict(), "path": paths}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._tracker.load_state_dict(state["snapshot"])
        self._path = {g: [None if t is None else t.clone() for t in ts]
                      for g, ts in state["path"].items()}


@SIGNALS.register("update_alignment")
class UpdateAlignment(Signal):
    """Cosine between this step's gradient and the previous *update* (the hypergradient).

    ``cos(g_t, −Δθ_{t−1})`` is the normalised derivative of the loss with respect to the
    previous step's learning rate, with its sign flipped: > 0 means the last step was too
    short (continuing it still descends), < 0 too long. With SGD it is the cosine of two
    consecutive gradients; with Adam it pairs ``g_t`` with Adam's previous direction, as
    Adam-HD does.

    Keys: ``update_alignment`` (all groups), ``update_alignment/{g}``,
    ``update_alignment.valid``. Cost: one parameter-sized snapshot, three dot products per
    tensor, one host sync.
    """

    name = "update_alignment"

    def __init__(self, every: int = 1, name: str = "update_alignment") -> None:
        self.name = name
        self.every = check_int("every", every)
        self._tracker = _UpdateTracker()

    @torch.no_grad()
    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        deltas = self._tracker.deltas(ctx.params_by_group)
        groups = list(ctx.params_by_group)
        rows: list[Tensor] = []  # per group: (g·(−Δ), |g|², |Δ|²)
        for group in groups:
            terms = []
            for p, delta in zip(ctx.params_by_group[group], deltas[group], strict=True):
                if delta is None or p.grad is None or p.grad.is_sparse:
                    continue
                g = p.grad.detach().flatten().to(torch.float64)
                d = delta.flatten().to(torch.float64)
                terms.append(torch.stack([-torch.dot(g, d), torch.dot(g, g), torch.dot(d, d)]))
            rows.extend(torch.stack(terms).sum(0) if terms else torch.zeros(3, dtype=torch.float64))
        flat = _host(rows)
        table = [flat[i:i + 3] for i in range(0, len(flat), 3)]
        return cosine_table(self.name, groups, table)

    def state_dict(self) -> dict[str, Any]:
        return {"snapshot": self._tracker.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._tracker.load_state_dict(state["snapshot"])


@SIGNALS.register("salera_path")
class SaleraPath(Signal):
    """The 2017 ALeRA statistic, per group (= per layer with layer-wise groups).

    Each group keeps ``p ← (1 − α) p + α g/|g|`` with the *gradient* of the whole group
    normalised at once, and reports the z-score ``(|p|² − μ_t)/σ`` against the
    transient-corrected random-walk mean ``μ_t = α/(2−α)·(1 − (1−α)^{2t})`` and the
    spread ``σ = α/√n`` (n scalars in the group), as SALeRA does.

    Keys: ``salera_path/{g}`` (z-score; 0 before the first gradient). Cost: one
    parameter-sized path, one norm per tensor, one host sync.
    """

    name = "salera_path"

    def __init__(self, alpha: float = 0.01, every: int = 1, name: str = "salera_path") -> None:
        self.name = name
        self.every = check_int("every", every)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0, low_open=True)
        self._path: dict[str, list[Tensor]] = {}
        self._count: dict[str, int] = {}

    @torch.no_grad()
    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        if not math.isfinite(ctx.grad_norm):
            return {f"{self.name}/{g}": 0.0 for g in ctx.params_by_group}
        groups = list(ctx.params_by_group)
        rows = []
        sizes = []
        for group in groups:
            params = [p for p in ctx.params_by_group[group]
                      if p.grad is not None and not p.grad.is_sparse]
            paths = self._path.get(group)
            if paths is None or [t.shape for t in paths] != [p.shape for p in params]:
                paths = self._path[group] = [torch.zeros_like(p, dtype=torch.float32)
                                             for p in params]
                self._count[group] = 0
            sizes.append(sum(p.numel() for p in params))
            if not params:
                rows.append(torch.zeros((), dtype=torch.float64))
                continue
            grads = [p.grad.detach().to(torch.float32) for p in params]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            scale = self.alpha / norm.clamp_min(torch.finfo(torch.float32).tiny)
            sq = torch.zeros((), dtype=torch.float64, device=norm.device)
            for path, g in zip(paths, grads, strict=True):
                path.mul_(1.0 - self.alpha).add_(g * scale)
                sq = sq + torch.linalg.vector_norm(path, dtype=torch.float64).square()
            self._count[group] += 1
            rows.append(sq)
        values = _host(rows)
        out: dict[str, float] = {}
        for group, sq_g, n in zip(groups, values, sizes, strict=True):
            t = self._count.get(group, 0)
            if n == 0 or t == 0:
                out[f"{self.name}/{group}"] = 0.0
                continue
            out[f"{self.name}/{group}"] = finite(alera_zscore(sq_g, self.alpha, t, n))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"path": {g: [t.clone() for t in ts] for g, ts in self._path.items()},
                "count": dict(self._count)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._path = {g: [t.clone() for t in ts] for g, ts in state["path"].items()}
        self._count = {g: int(n) for g, n in state["count"].items()}
