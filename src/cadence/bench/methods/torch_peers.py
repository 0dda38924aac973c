"""Peers built from torch alone: AdamW and SGD-momentum with the schedules people use."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR, ReduceLROnPlateau

from .base import Method, RunContext, ScheduledTrainer, Trainer, warmup_cosine

SGD_MOMENTUM = 0.9
SGD_WEIGHT_DECAY = 1e-4
PLATEAU_PATIENCE = 5  # evaluations; torch's default of 10 rarely fires in a 20-30-eval run


def adamw_cosine(model: nn.Module, lr: float, ctx: RunContext) -> Trainer:
    """The oracle family: AdamW, 5 % linear warm-up from 0, cosine to 0 (warmup_cosine)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ctx.weight_decay)
    return ScheduledTrainer(opt, LambdaLR(opt, warmup_cosine(ctx.total_steps)))


def adamw_constant(model: nn.Module, lr: float, ctx: RunContext) -> Trainer:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ctx.weight_decay)
    return ScheduledTrainer(opt)


def sgd_cosine(model: nn.Module, lr: float, ctx: RunContext) -> Trainer:
    wd = SGD_WEIGHT_DECAY if ctx.weight_decay else 0.0
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=SGD_MOMENTUM, weight_decay=wd)
    return ScheduledTrainer(opt, LambdaLR(opt, warmup_cosine(ctx.total_steps)))


def adamw_onecycle(model: nn.Module, lr: float, ctx: RunContext) -> Trainer:
    """``OneCycleLR`` at its defaults (30 % up, cosine down, β1 cycled 0.95 → 0.85)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ctx.weight_decay)
    return ScheduledTrainer(opt, OneCycleLR(opt, max_lr=lr, total_steps=ctx.total_steps + 1))


class PlateauTrainer(Trainer):
    """AdamW at a constant rate, cut ×0.1 by ``ReduceLROnPlateau`` on the selection metric."""

    def __init__(self, opt: torch.optim.Optimizer, ctx: RunContext) -> None:
        self.optimizer = opt
        self.primary = ctx.primary
        mode: Literal["min", "max"] = "max" if ctx.higher_is_better else "min"
        self.scheduler = ReduceLROnPlateau(opt, mode=mode, patience=PLATEAU_PATIENCE)

    def observe(self, metrics: dict[str, float]) -> None:
        if self.primary in metrics:
            self.scheduler.step(metrics[self.primary])


def adamw_plateau(model: nn.Module, lr: float, ctx: RunContext) -> Trainer:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ctx.weight_decay)
    return PlateauTrainer(opt, ctx)


METHODS = [
    Method("adamw-cosine", adamw_cosine, description="AdamW + 5% warmup + cosine (oracle family)"),
    Method("adamw-constant", adamw_constant, description="AdamW, constant learning rate"),
    Method(
        "sgd-cosine", sgd_cosine, family="sgd", default_lr=0.1,
        description=f"SGD momentum {SGD_MOMENTUM} + 5% warmup + cosine",
    ),
    Method("adamw-onecycle", adamw_onecycle, description="AdamW + OneCycleLR (max_lr = lr)"),
    Method(
        "adamw-plateau", adamw_plateau,
        description=f"AdamW + ReduceLROnPlateau(factor 0.1, patience {PLATEAU_PATIENCE} evals)",
    ),
]
