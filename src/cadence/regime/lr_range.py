"""The learning-rate range test: a short exponential sweep that suggests a starting lr.

A tool to run before training (Smith's "LR range test"), not a controller: it steps the
optimizer itself, then restores parameters, optimizer state and every group's lr.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable
from typing import Any

import torch

from cadence.regime.knobs import read_knob, write_knob


def lr_range_test(
    optimizer: torch.optim.Optimizer,
    closure: Callable[[], torch.Tensor],
    lr_min: float = 1e-6,
    lr_max: float = 1.0,
    steps: int = 50,
    beta: float = 0.7,
    diverge: float = 4.0,
) -> dict[str, Any]:
    """Short exponential lr sweep; returns ``{"lr", "lrs", "losses"}``; restores all state.

    ``closure()`` computes the loss on a fresh batch and returns it *without* calling
    backward. The suggestion is the lr of the smoothed-loss minimum divided by 10 (the
    classic "one decade below the valley floor"). The sweep stops early once the smoothed
    loss exceeds ``diverge`` × its best. Parameters, optimizer state and the groups' lr are
    restored afterwards, so training starts from where it was.
    """
    if not 0 < lr_min < lr_max:
        raise ValueError(f"need 0 < lr_min < lr_max, got {lr_min!r}, {lr_max!r}")
    if steps < 5:
        raise ValueError(f"steps must be >= 5, got {steps!r}")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    saved_params = [p.detach().clone() for p in params]
    saved_opt = copy.deepcopy(optimizer.state_dict())
    base = [read_knob(g, "lr") for g in optimizer.param_groups]
    ref = max(base) or 1.0
    lrs, losses = [], []
    smooth, best = None, math.inf
    try:
        for i in range(steps):
            lr = lr_min * (lr_max / lr_min) ** (i / (steps - 1))
            for g, b in zip(optimizer.param_groups, base, strict=True):
                write_knob(g, "lr", lr * (b / ref if ref else 1.0))
            optimizer.zero_grad(set_to_none=True)
            loss = closure()
            loss.backward()
            value = float(loss.detach())
            if not math.isfinite(value):
                break
            optimizer.step()
            smooth = value if smooth is None else beta * smooth + (1 - beta) * value
            lrs.append(lr)
            losses.append(smooth)
            best = min(best, smooth)
            if smooth > diverge * best and i > 3:
                break
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved_params, strict=True):
                p.copy_(s)
        optimizer.load_state_dict(saved_opt)
        for g, b in zip(optimizer.param_groups, base, strict=True):
            write_knob(g, "lr", b)
        optimizer.zero_grad(set_to_none=True)
    if not losses:
        raise ValueError("lr_range_test: the loss was non-finite from the first step")
    i_min = min(range(len(losses)), key=losses.__getitem__)
    return {"lr": lrs[i_min] / 10.0, "lrs": lrs, "losses": losses,
            "median_loss": statistics.median(losses)}


__all__ = ["lr_range_test"]
