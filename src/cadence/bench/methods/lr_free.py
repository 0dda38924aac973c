"""Learning-rate-free peers: Prodigy (``prodigyopt``) and D-Adaptation Adam (``dadaptation``).

Both keep a step-size estimate ``d`` that starts at ``d0`` and only grows; the effective
rate is ``d · lr`` with ``lr`` a multiplier (default 1). The benchmark's "initial learning
rate" axis maps to ``d0`` for ``prodigy`` / ``dadapt-adam`` (it *is* the initial step
size, like cadence's initial rate); the ``*-mult`` arms sweep the multiplier instead
(1e-3 … 1e2) at ``d0 = 1e-6``. Schedules follow the READMEs: Prodigy with cosine to the
end and no warm-up; D-Adaptation keeps the usual warm-up + cosine.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .base import Method, RunContext, ScheduledTrainer, Trainer, warmup_cosine

D0_DEFAULT = 1e-6


class DTrainer(ScheduledTrainer):
    def current_lr(self) -> float:
        g = self.optimizer.param_groups[0]
        return float(g.get("d", 1.0) * g["lr"])


def _prodigy(model: nn.Module, lr: float, d0: float, ctx: RunContext) -> Trainer:
    from prodigyopt import Prodigy

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Using decoupled weight decay"
        opt: torch.optim.Optimizer = Prodigy(
            model.parameters(), lr=lr, d0=d0, weight_decay=ctx.weight_decay
        )
    return DTrainer(opt, LambdaLR(opt, warmup_cosine(ctx.total_steps, 0.0)))


def _dadapt(model: nn.Module, lr: float, d0: float, ctx: RunContext) -> Trainer:
    from dadaptation import DAdaptAdam

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Using decoupled weight decay"
        opt: torch.optim.Optimizer = DAdaptAdam(
            model.parameters(), lr=lr, d0=d0, weight_decay=ctx.weight_decay, decouple=True
        )
    return DTrainer(opt, LambdaLR(opt, warmup_cosine(ctx.total_steps)))


def _arms(
    name: str,
    build: Callable[[nn.Module, float, float, RunContext], Trainer],
    requires: tuple[str, ...],
    description_d0: str,
    description_mult: str,
) -> list[Method]:
    """The two arms of one method, ``build(model, lr, d0, ctx)``: ``name`` sweeps ``d0``
    at lr multiplier 1; ``name-mult`` sweeps the multiplier at ``d0 = D0_DEFAULT``."""
    return [
        Method(
            name, lambda m, v, ctx: build(m, 1.0, v, ctx), family="adam",
            default_lr=D0_DEFAULT, requires=requires, lr_meaning="d0 (lr multiplier 1)",
            description=description_d0,
        ),
        Method(
            f"{name}-mult", lambda m, v, ctx: build(m, v, D0_DEFAULT, ctx), family="mult",
            default_lr=1.0, requires=requires, lr_meaning="lr multiplier (d0 1e-6)",
            description=description_mult,
        ),
    ]


METHODS = [
    *_arms(
        "prodigy", _prodigy, ("prodigyopt",),
        "Prodigy, lr=1, cosine; swept value is d0",
        "Prodigy, d0=1e-6, cosine; swept value is the lr multiplier",
    ),
    *_arms(
        "dadapt-adam", _dadapt, ("dadaptation",),
        "D-Adaptation Adam, lr=1, warmup+cosine; swept value is d0",
        "D-Adaptation Adam, d0=1e-6; swept value is the lr multiplier",
    ),
]
