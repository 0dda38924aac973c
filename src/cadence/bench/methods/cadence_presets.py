"""cadence's presets, driven through the public surface only (as DESIGN.md shows)::

    groups = cadence.param_groups(model, lr=lr, weight_decay=wd)
    optimizer = torch.optim.AdamW(groups)
    regime = cadence.Regime(optimizer, total_steps=T, preset=name)
    loss.backward(); regime.step(loss)
    regime.observe(val_loss=..., val_acc=...)   # at evaluation points
"""

from __future__ import annotations

import functools
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


@functools.cache
def preset_problem(preset: str) -> str | None:
    """Why ``preset`` cannot run (unknown to this cadence), or ``None``; tried through the
    public surface on a one-parameter model."""
    import cadence

    model = nn.Linear(1, 1)
    try:
        opt = torch.optim.AdamW(cadence.param_groups(model, lr=1e-3, weight_decay=0.0))
        cadence.Regime(opt, total_steps=10, preset=preset)
    except Exception as err:
        return f"cadence.Regime(preset={preset!r}) fails: {type(err).__name__}: {err}"
    return None


def _factory(preset: str) -> Any:
    return lambda model, lr, ctx: CadenceTrainer(model, lr, ctx, preset)


METHODS = [
    Method(
        f"cadence-{p}", _factory(p), default_lr=1e-3,
        requires=("cadence.regime:Regime", "cadence.groups:param_groups"),
        check=functools.partial(preset_problem, p),
        lr_meaning="initial learning rate", description=f"cadence.Regime(preset={p!r}) over AdamW",
    )
    for p in PRESETS
]
