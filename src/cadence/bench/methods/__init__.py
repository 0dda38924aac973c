"""Benchmark arms by name: the peers as users run them and cadence's presets.

Each family lives in one module exposing ``METHODS``; this registry collects them.
"""

from __future__ import annotations

from .base import ADAM_GRID, SGD_GRID, Method, RunContext, Trainer, warmup_cosine
from .cadence_presets import METHODS as _CADENCE
from .lr_free import METHODS as _LR_FREE
from .schedule_free import METHODS as _SF
from .torch_peers import METHODS as _TORCH

MULT_GRID = tuple(10 ** (k / 2) for k in range(-6, 5))  # 1e-3 … 1e2 (multiplier sweeps)

METHODS: dict[str, Method] = {m.name: m for m in (*_TORCH, *_SF, *_LR_FREE, *_CADENCE)}
ORACLE_METHOD = "adamw-cosine"


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_grid(method: Method) -> tuple[float, ...]:
    """The half-decade sweep of ``method``'s swept value."""
    return {"sgd": SGD_GRID, "mult": MULT_GRID}.get(method.family, ADAM_GRID)


__all__ = [
    "ADAM_GRID", "SGD_GRID", "MULT_GRID", "METHODS", "ORACLE_METHOD", "Method", "RunContext",
    "Trainer", "get_method", "method_grid", "warmup_cosine",
]
