"""Helpers for the signal tests: build a MeasureContext from an optimizer, as the Regime does."""

from __future__ import annotations

from typing import Any

import torch

from cadence.protocol import MeasureContext


def group_params(optimizer: torch.optim.Optimizer) -> dict[str, list[torch.Tensor]]:
    return {
        g.get("name", f"group{i}"): [p for p in g["params"] if p.requires_grad]
        for i, g in enumerate(optimizer.param_groups)
    }


def make_ctx(
    optimizer: torch.optim.Optimizer, step: int = 0, loss: float = 0.0, **kw: Any
) -> MeasureContext:
    params = group_params(optimizer)
    sq = 0.0
    for ps in params.values():
        for p in ps:
            if p.grad is not None:
                g = p.grad.coalesce().values() if p.grad.is_sparse else p.grad
                sq += float(g.float().square().sum())
    return MeasureContext(
        step=step, loss=loss, params_by_group=params, optimizer=optimizer,
        grad_norm=kw.pop("grad_norm", sq**0.5), **kw,
    )


def run_signal(signal: Any, ctx: MeasureContext) -> dict[str, float]:
    """measure → (single-rank reduce is the identity) → update."""
    return signal.update(signal.measure(ctx))
