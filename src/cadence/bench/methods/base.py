"""The method contract: how one training arm turns a model and an initial learning rate
into an optimizer loop, exactly as a user of that method would write it.

The runner calls, per step, ``loss.backward()`` then ``trainer.step(loss)``; around each
evaluation ``trainer.eval_mode(model)`` / ``trainer.train_mode(model)``; after it
``trainer.observe(metrics)`` with the selection-split metrics (``loss``, ``acc``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cadence import schedules
from cadence.schedules import Schedule

#: half-decade grids (BENCHMARK.md): Adam family 1e-5 … 1, SGD family 1e-4 … 10
ADAM_GRID = tuple(10 ** (k / 2) for k in range(-10, 1))
SGD_GRID = tuple(10 ** (k / 2) for k in range(-8, 3))
DEFAULT_WEIGHT_DECAY = 0.01
WARMUP_FRACTION = 0.05


class Trainer:
    """One arm's optimizer loop. Subclasses set ``self.optimizer`` and override hooks."""

    optimizer: torch.optim.Optimizer

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def eval_mode(self, model: nn.Module) -> None:
        """Called before evaluation (schedule-free swaps to its averaged weights here)."""

    def train_mode(self, model: nn.Module) -> None:
        """Called after evaluation, before training resumes."""

    def observe(self, metrics: dict[str, float]) -> None:
        """Selection-split metrics after an evaluation (plateau rules and cadence use them)."""

    def finish(self, model: nn.Module) -> bool:
        """After the last step's selection metrics were observed: put the weights the
        method would hand to its user in place (``True`` iff they changed)."""
        return False

    def current_lr(self) -> float:
        """Effective learning rate of the first group, for the curve."""
        return float(self.optimizer.param_groups[0]["lr"])


@dataclass
class RunContext:
    """What a method may know about the run: its budget and the workload's nature."""

    total_steps: int
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    higher_is_better: bool = True  # of the primary metric
    primary: str = "acc"
    recalibrate: Callable[[nn.Module], None] | None = None  # BatchNorm stats at eval weights
    #: the workload's function groups (``groups=`` for ``cadence.param_groups``), e.g. a
    #: fine-tuning workload's pretrained body and new head; ``None``: one group of everything
    param_group_spec: Mapping[str, Mapping[str, Any]] | None = None


@dataclass
class Method:
    """A registered arm: ``build(model, lr, ctx) -> Trainer``.

    ``family`` picks the sweep grid; ``default_lr`` is the documented default point;
    ``requires`` lists modules it needs (``module:attr`` also checks an attribute);
    ``lr_meaning`` documents what the swept "initial learning rate" is for this arm.
    """

    name: str
    build: Callable[[nn.Module, float, RunContext], Trainer]
    family: str = "adam"
    default_lr: float = 1e-3
    requires: tuple[str, ...] = ()
    lr_meaning: str = "peak learning rate"
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    check: Callable[[], str | None] | None = None  # extra availability check, after requires

    def missing(self) -> str | None:
        """A message naming what is missing, or ``None`` when the method can run."""
        for req in self.requires:
            mod, _, attr = req.partition(":")
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return f"method {self.name!r} skipped: needs the module {mod!r}, not installed"
            if attr:
                try:
                    getattr(importlib.import_module(mod), attr)
                except Exception as err:  # a half-built or broken part of cadence
                    return f"method {self.name!r} skipped: {req} is unavailable ({err})"
        if self.check is not None:
            problem = self.check()
            if problem:
                return f"method {self.name!r} skipped: {problem}"
        return None



def warmup_cosine(total_steps: int, warmup_fraction: float = WARMUP_FRACTION) -> Schedule:
    """Multiplier for ``LambdaLR``: :func:`cadence.schedules.warmup_cosine` (linear warmup
    from 0 to the peak at step ``round(warmup_fraction * total_steps)``, then cosine to 0 at
    ``total_steps``), the same curve as the ``cosine`` preset's at every step."""
    warmup_steps = int(round(warmup_fraction * total_steps))
    return schedules.warmup_cosine(total_steps=total_steps, warmup_steps=warmup_steps)


class ScheduledTrainer(Trainer):
    """A torch optimizer with an optional per-step ``LRScheduler`` (stepped after the optimizer)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
