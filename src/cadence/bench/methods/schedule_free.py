"""Schedule-Free AdamW (``schedulefree``), with its train/eval switch done right.

The optimizer is put in train mode before the first step, switched to eval (averaged
weights x) before every evaluation and back afterwards. With BatchNorm, running
statistics are recomputed at x before evaluating, as the package's README asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .base import WARMUP_FRACTION, Method, RunContext, Trainer

if TYPE_CHECKING:
    from schedulefree import AdamWScheduleFree


class ScheduleFreeTrainer(Trainer):
    optimizer: AdamWScheduleFree  # has train() / eval()

    def __init__(self, model: nn.Module, lr: float, ctx: RunContext) -> None:
        import schedulefree

        self.optimizer = schedulefree.AdamWScheduleFree(
            model.parameters(), lr=lr, weight_decay=ctx.weight_decay,
            warmup_steps=round(WARMUP_FRACTION * ctx.total_steps),
        )
        self.recalibrate = ctx.recalibrate
        self.optimizer.train()

    def eval_mode(self, model: nn.Module) -> None:
        self.optimizer.eval()
        if self.recalibrate is not None:
            self.recalibrate(model)

    def train_mode(self, model: nn.Module) -> None:
        self.optimizer.train()

    def current_lr(self) -> float:
        group = self.optimizer.param_groups[0]
        return float(group.get("scheduled_lr", group["lr"]))


METHODS = [
    Method(
        "schedulefree-adamw", lambda m, lr, ctx: ScheduleFreeTrainer(m, lr, ctx),
        default_lr=2.5e-3, requires=("schedulefree",),
        description="AdamWScheduleFree, 5% warmup, eval at averaged weights",
    ),
]
