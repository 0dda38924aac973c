"""Plain float64 transcriptions of the CLARA equations, for testing the optimizers.

Written line by line from the equations in docs/clara.md (not by calling the optimizers):
numpy arrays, explicit loops over steps, groups and tensors, nothing fused or in place.
A problem is described by ``groups`` (a list of ``{"params": [array, ...], "lr": float}``)
and ``grad_fn(step, params) -> grads`` with the same nesting, ``None`` for a tensor that
gets no gradient at that step (frozen or unused). Both functions return the final
parameters and the list of every group's lr after each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Params = list[list[np.ndarray]]
GradFn = Callable[[int, Params], list[list[Any]]]


def _mu(c: float, beta: float) -> float:
    a = 1.0 - c
    return c / (2.0 - c) * (1.0 + a * beta) / (1.0 - a * beta)


def _norm(x: np.ndarray) -> float:
    return math.sqrt(float(np.sum(x * x)))


def clara_sgd_reference(
    groups: list[dict[str, Any]],
    grad_fn: GradFn,
    steps: int,
    *,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    c: float = 0.2,
    damping: float = 1e-3,
    variant: str = "adapted",
) -> tuple[Params, list[list[float]]]:
    """SGD-CLARA: ``b = beta b + (g + wd theta)``; ``theta -= lr (b or b/|b|)``;
    ``p = (1-c) p + c b/|b|``; then every lr ``*= exp(d (sum |p|^2 / (K mu) - 1))``."""
    params = [[np.array(x, dtype=np.float64) for x in g["params"]] for g in groups]
    lrs = [float(g["lr"]) for g in groups]
    paths = [[np.zeros_like(x) for x in gp] for gp in params]
    bufs: list[list[np.ndarray | None]] = [[None for _ in gp] for gp in params]
    mu = _mu(c, momentum)
    history = []
    for t in range(steps):
        grads = grad_fn(t, params)
        total, count = 0.0, 0
        for gi in range(len(params)):
            for k in range(len(params[gi])):
                g = grads[gi][k]
                if g is None:
                    continue
                g = np.asarray(g, dtype=np.float64) + weight_decay * params[gi][k]
                buf = bufs[gi][k]
                if momentum == 0.0:
                    direction = g
                elif buf is None:
                    direction = g.copy()
                else:
                    direction = momentum * buf + g
                bufs[gi][k] = direction
                norm = _norm(direction)
                u = direction / norm if norm > 0 else np.zeros_like(direction)
                step = u if variant == "unit" else direction
                params[gi][k] = params[gi][k] - lrs[gi] * step
                if norm == 0:
                    continue  # no direction: the path keeps its value and is not counted
                paths[gi][k] = (1.0 - c) * paths[gi][k] + c * u
                total += float(np.sum(paths[gi][k] ** 2))
                count += 1
        if count:
            factor = math.exp(damping * (total / (count * mu) - 1.0))
            lrs = [lr * factor for lr in lrs]
        history.append(list(lrs))
    return params, history


def clara_adam_reference(
    groups: list[dict[str, Any]],
    grad_fn: GradFn,
    steps: int,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    c: float = 0.2,
    damping: float = 1e-3,
    variant: str = "adapted",
) -> tuple[Params, list[list[float]]]:
    """Adam-CLARA: Adam moments with bias correction, ``a = m_hat / (sqrt(v_hat) + eps)``;
    ``theta -= lr (a or a/|a|)``; ``p = (1-c) p + c a/|a|``; every lr
    ``*= exp(d (sum |p|^2 / (K mu_A) - 1))`` with ``mu_A = c/(2-c) (1+(1-c)b1)/(1-(1-c)b1)``."""
    b1, b2 = betas
    params = [[np.array(x, dtype=np.float64) for x in g["params"]] for g in groups]
    lrs = [float(g["lr"]) for g in groups]
    paths = [[np.zeros_like(x) for x in gp] for gp in params]
    ms = [[np.zeros_like(x) for x in gp] for gp in params]
    vs = [[np.zeros_like(x) for x in gp] for gp in params]
    counts = [[0 for _ in gp] for gp in params]
    mu = _mu(c, b1)
    history = []
    for t in range(steps):
        grads = grad_fn(t, params)
        total, count = 0.0, 0
        for gi in range(len(params)):
            for k in range(len(params[gi])):
                g = grads[gi][k]
                if g is None:
                    continue
                g = np.asarray(g, dtype=np.float64)
                theta = params[gi][k]
                if decoupled_weight_decay:
                    theta = theta * (1.0 - lrs[gi] * weight_decay)
                else:
                    g = g + weight_decay * theta
                counts[gi][k] += 1
                n = counts[gi][k]
                ms[gi][k] = b1 * ms[gi][k] + (1.0 - b1) * g
                vs[gi][k] = b2 * vs[gi][k] + (1.0 - b2) * g * g
                m_hat = ms[gi][k] / (1.0 - b1**n)
                v_hat = vs[gi][k] / (1.0 - b2**n)
                a = m_hat / (np.sqrt(v_hat) + eps)
                norm = _norm(a)
                u = a / norm if norm > 0 else np.zeros_like(a)
                step = u if variant == "unit" else a
                params[gi][k] = theta - lrs[gi] * step
                if norm == 0:
                    continue  # no direction: the path keeps its value and is not counted
                paths[gi][k] = (1.0 - c) * paths[gi][k] + c * u
                total += float(np.sum(paths[gi][k] ** 2))
                count += 1
        if count:
            factor = math.exp(damping * (total / (count * mu) - 1.0))
            lrs = [lr * factor for lr in lrs]
        history.append(list(lrs))
    return params, history
