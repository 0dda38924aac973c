"""Update-to-weight ratio ``|Δθ| / |θ|`` per group.

How fast each layer moves relative to its size. For SGD the classic band is around 1e-3
per step; for Adam the early ratio is ≈ lr / rms(θ), so read it *relative to the median
group* (a group 10× off the median for long is learning too fast or too slowly). This is
the statistic behind LARS/LAMB's trust ratio and cadence's per-layer rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from cadence.checks import check_int
from cadence.protocol import SIGNALS, MeasureContext, Signal
from cadence.stats import finite, median

__all__ = ["UpdateRatio"]


@SIGNALS.register("update_ratio")
class UpdateRatio(Signal):
    """``|θ_after − θ_before| / |θ_before|`` per group, on sampled steps.

    ``measure`` (before ``optimizer.step()``) snapshots the trainable parameters;
    ``after_step`` (after it) computes the ratios. They are reported by the *next*
    ``measure`` call, so they go through the same cross-rank reduction as every other raw
    value. Keys: ``update_ratio/{g}``, ``update_ratio`` (all groups), derived
    ``update_ratio.rel/{g}`` (ratio / median over non-empty groups) and
    ``update_ratio.valid`` (1 once a ratio exists). Groups whose weights are all zero
    report 0.

    Cost on sampled steps (every ``every`` = 10 by default): a copy of the parameters
    (memory 1× params, freed after the step) and two fused norms per group. Sparse and
    frozen tensors are measured like dense ones (frozen ones are not in the context).
    """

    name = "update_ratio"

    def __init__(self, every: int = 10, name: str = "update_ratio") -> None:
        self.name = name
        self.every = check_int("every", every)
        self._snapshot: dict[str, list[torch.Tensor]] | None = None
        self._pending: dict[str, float] = {}

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        out = {f"{self.name}/{g}": self._pending.get(g, 0.0) for g in ctx.params_by_group}
        out[self.name] = self._pending.get("", 0.0)
        out[f"{self.name}.valid"] = 1.0 if self._pending else 0.0
        self._snapshot = {
            g: [p.detach().clone() for p in ps] for g, ps in ctx.params_by_group.items()
        }
        return out

    def after_step(self, ctx: MeasureContext) -> None:
        """Compute the ratios of the update just applied (no-op without a snapshot); the next
        ``measure`` reports them."""
        if self._snapshot is None:
            return
        per_group: list[torch.Tensor] = []
        names = []
        for group, before in self._snapshot.items():
            after = ctx.params_by_group.get(group, [])
            pairs = [(a, b) for a, b in zip(after, before, strict=False) if a.numel() > 0]
            names.append(group)
            if not pairs:
                per_group.append(torch.zeros(2))
                continue
            du = torch._foreach_sub([a.detach() for a, _ in pairs], [b for _, b in pairs])
            d = torch._foreach_norm(du, 2, dtype=torch.float32)
            w = torch._foreach_norm([b for _, b in pairs], 2, dtype=torch.float32)
            per_group.append(
                torch.stack([torch.stack(d).square().sum(), torch.stack(w).square().sum()]).cpu()
            )
        self._snapshot = None
        table = torch.stack(per_group).tolist() if per_group else []
        pending: dict[str, float] = {}
        tot_d = tot_w = 0.0
        for group, (d2, w2) in zip(names, table, strict=True):
            pending[group] = finite(math.sqrt(d2 / w2)) if w2 > 0 else 0.0
            tot_d, tot_w = tot_d + d2, tot_w + w2
        pending[""] = finite(math.sqrt(tot_d / tot_w)) if tot_w > 0 else 0.0
        self._pending = pending

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        out = dict(reduced)
        prefix = f"{self.name}/"
        ratios = {k[len(prefix):]: v for k, v in reduced.items() if k.startswith(prefix)}
        positive = [v for v in ratios.values() if v > 0]
        mid = median(positive) if positive else 0.0
        for group, value in ratios.items():
            out[f"{self.name}.rel/{group}"] = value / mid if mid > 0 else 1.0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"pending": dict(self._pending)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._pending = dict(state["pending"])
        self._snapshot = None
