"""Per-group gradient statistics: norms with their running mean/variance, and alignment.

``grad_norms`` is the cheap every-step signal behind per-layer rates and adaptive clipping;
``grad_alignment`` (cosine between consecutive gradients) tells whether the optimizer is
oscillating across a valley (negative) or moving along a consistent direction (positive),
which drives momentum control.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from cadence.checks import check_beta, check_int
from cadence.protocol import SIGNALS, MeasureContext, Signal
from cadence.signals._stats import cosine_table, dense_grad, group_grad_sq_norms
from cadence.stats import Ema, EmaMoments, finite

__all__ = ["GradNorms", "GradAlignment"]


@SIGNALS.register("grad_norms")
class GradNorms(Signal):
    """Gradient L2 norm of every group, its EMA mean/std and z-score (pre-clip).

    Keys: ``grad_norms/{g}`` (norm), ``grad_norms.rms/{g}`` (norm / sqrt(#coordinates with a
    gradient): comparable across groups of different size), ``grad_norms.mean/{g}``,
    ``grad_norms.std/{g}`` and ``grad_norms.z/{g}`` (z of this step against the running
    statistics *before* it is folded in, ZClip-style).

    Cost: one fused ``_foreach_norm`` per group per step; no tensor state.
    """

    name = "grad_norms"

    def __init__(self, beta: float = 0.97, every: int = 1, name: str = "grad_norms") -> None:
        self.name = name
        self.every = check_int("every", every)
        self.beta = check_beta("beta", beta)
        self._moments: dict[str, EmaMoments] = {}

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        out: dict[str, float] = {}
        for group, sq in group_grad_sq_norms(ctx.params_by_group).items():
            n = sum(
                int(g.numel())
                for g in (dense_grad(p) for p in ctx.params_by_group[group])
                if g is not None
            )
            norm = math.sqrt(sq)
            out[f"{self.name}/{group}"] = norm
            out[f"{self.name}.rms/{group}"] = norm / math.sqrt(n) if n else 0.0
        return out

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        out = dict(reduced)
        prefix = f"{self.name}/"
        for key, norm in reduced.items():
            if not key.startswith(prefix):
                continue
            group = key[len(prefix):]
            mom = self._moments.setdefault(group, EmaMoments(self.beta))
            out[f"{self.name}.z/{group}"] = finite(mom.zscore(norm))
            mom.update(norm)
            out[f"{self.name}.mean/{group}"] = mom.mean
            out[f"{self.name}.std/{group}"] = mom.std
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"moments": {g: m.state_dict() for g, m in self._moments.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._moments = {}
        for group, s in state["moments"].items():
            self._moments[group] = EmaMoments(self.beta)
            self._moments[group].load_state_dict(s)


@SIGNALS.register("grad_alignment")
class GradAlignment(Signal):
    """Cosine similarity between this step's gradient and the previous one, per group.

    Keys: ``grad_alignment/{g}`` and ``grad_alignment`` (all groups), raw, and
    ``grad_alignment.ema/{g}``, ``grad_alignment.ema`` smoothed (bias-corrected EMA).
    Steady negative values mean consecutive steps undo each other (oscillation); steady
    positive values mean a consistent descent direction. Raw gradients are used, so it
    works for any optimizer, with or without momentum.

    Cost: one gradient-sized copy kept between steps (memory 1× the trainable parameters)
    and two fused reductions per group per step. Sparse gradients are skipped (their rows
    change from step to step). Measure every step: a gap of k steps measures something else.
    """

    name = "grad_alignment"

    def __init__(self, beta: float = 0.9, every: int = 1, name: str = "grad_alignment") -> None:
        self.name = name
        self.every = check_int("every", every)
        self.beta = check_beta("beta", beta)
        self._prev: dict[str, list[torch.Tensor | None]] = {}
        self._ema: dict[str, Ema] = {}

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        groups = list(ctx.params_by_group)
        sums = []  # per group: (g·g_prev, |g|², |g_prev|²) as 0-d tensors, one sync at the end
        for group in groups:
            prev = self._prev.get(group)
            cur: list[torch.Tensor | None] = []
            acc: torch.Tensor | None = None
            for i, p in enumerate(ctx.params_by_group[group]):
                g = p.grad
                if g is None or g.is_sparse:
                    cur.append(None)
                    continue
                g32 = g.detach().to(torch.float32).flatten()
                old = prev[i] if prev is not None and i < len(prev) else None
                if old is not None and old.shape == g32.shape:
                    triple = torch.stack(
                        [torch.dot(g32, old), torch.dot(g32, g32), torch.dot(old, old)]
                    )
                    acc = triple if acc is None else acc + triple
                cur.append(g32.clone() if g32.data_ptr() == g.data_ptr() else g32)
            self._prev[group] = cur
            sums.append(acc.cpu() if acc is not None else torch.zeros(3))
        table = torch.stack(sums).tolist() if sums else []
        return cosine_table(self.name, groups, table)

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        out = dict(reduced)
        if reduced.get(f"{self.name}.valid", 0.0) <= 0.0:
            return out
        prefix = f"{self.name}/"
        for key, value in reduced.items():
            if key == self.name or key.startswith(prefix):
                group = key[len(prefix):] if key != self.name else ""
                ema = self._ema.setdefault(group, Ema(self.beta))
                ema.update(value)
                out[f"{self.name}.ema/{group}" if group else f"{self.name}.ema"] = ema.value
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "ema": {g: e.state_dict() for g, e in self._ema.items()},
            "prev": {g: [t.clone() if t is not None else None for t in ts]
                     for g, ts in self._prev.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._ema = {}
        for group, s in state["ema"].items():
            self._ema[group] = Ema(self.beta)
            self._ema[group].load_state_dict(s)
        self._prev = {g: list(ts) for g, ts in state.get("prev", {}).items()}
