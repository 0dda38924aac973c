"""Stress variants of a base workload: one disturbance at half the budget.

Kinds: ``shift`` (training inputs get N(0, 0.5²) noise from then on; evaluation stays
clean), ``nan`` (one non-finite loss), ``spike`` (one loss, hence gradient, ×1e3),
``labelnoise`` (random labels for 5 % of the budget), ``batch`` (batch size ×4 from then
on). The runner records NaNs reaching the weights and recovery steps for every run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Workload

KINDS = ("shift", "nan", "spike", "labelnoise", "batch")


class Stress(Workload):
    def __init__(self, base: Workload, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"Stress kind={kind!r} is not one of {KINDS}")
        self.base = base
        self.kind = kind
        self.name = f"stress-{kind}"
        self.task, self.primary = base.task, base.primary
        self.higher_is_better = base.higher_is_better
        self.steps, self.batch_size, self.eval_every = base.steps, base.batch_size, base.eval_every
        self.description = f"{base.name} with a '{kind}' disturbance at 50% of the budget"

    @property
    def event_step(self) -> int:
        return self.steps // 2

    def prepare(self) -> None:
        self.base.prepare()

    def make_model(self) -> nn.Module:
        return self.base.make_model()

    def batch(self, step: int, gen: torch.Generator) -> Any:
        if self.kind == "batch" and step >= self.event_step:
            parts = [self.base.batch(4 * step + i, gen) for i in range(4)]
            return tuple(torch.cat(t) for t in zip(*parts, strict=True))
        return self.base.batch(step, gen)

    def perturb(self, step: int, batch: Any, gen: torch.Generator) -> Any:
        x, y = batch
        if self.kind == "shift" and step >= self.event_step:
            x = x + 0.5 * torch.randn(x.shape, generator=gen)
        burst = max(1, self.steps // 20)
        if self.kind == "labelnoise" and self.event_step <= step < self.event_step + burst:
            y = torch.randint(0, 10, y.shape, generator=gen)
        return x, y

    def perturb_loss(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        if step == self.event_step:
            if self.kind == "nan":
                return loss * float("nan")
            if self.kind == "spike":
                return loss * 1e3
        return loss

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return self.base.loss(model, batch)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        return self.base.evaluate(model, split)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "base": self.base.name, "event_step": self.event_step}
