"""cadence's presets, driven through the public surface only (as DESIGN.md shows)::

    groups = cadence.param_groups(model, lr=lr, weight_decay=wd)
    optimizer = torch.optim.AdamW(groups)
    regime = cadence.Regime(optimizer, total_steps=T, preset=name)
    loss.backward(); regime.step(loss)
    regime.observe(val_loss=..., val_acc=...)   # at evaluation points
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Method, RunContext, Trainer

PRESETS = ("auto", "clara", "hypergradient", "plateau", "cosine", "learned")


class CadenceTrainer(Trainer):
    def __init__(self, model: nn.Module, lr: float, ctx: RunContext, preset: str) -> None:
        import cadence

        groups = cadence.param_groups(model, lr=lr, weight_decay=ctx.weight_decay)
        self.optimizer = torch.optim.AdamW(groups)
        self.regime: Any = cadence.Regime(
            self.optimizer, total_steps=ctx.total_steps, preset=preset
        )

    def step(self, loss: torch.Tensor) -> None:
        self.regime.step(loss)

    def observe(self, metrics: dict[str, float]) -> None:
        kwargs = {f"val_{k}": v for k, v in metrics.items() if k in ("loss", "acc")}
        if kwargs:
            self.regime.observe(**kwargs)


def _factory(preset: str) -> Any:
    return lambda model, lr, ctx: CadenceTrainer(model, lr, ctx, preset)


METHODS = [
    Method(
        f"cadence-{p}", _factory(p), default_lr=1e-3,
        lr_meaning="initial learning rate", description=f"cadence.Regime(preset={p!r}) over AdamW",
    )
    for p in PRESETS
]
