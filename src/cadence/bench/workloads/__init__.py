"""Benchmark workloads by name. Adding one is one file plus one line here.

``get_workload(name)`` returns a fresh instance (workloads keep per-run data-order state).
"""

from __future__ import annotations

from collections.abc import Callable

from .base import SPLITS, Workload
from .charlm import CharLM
from .digits import DigitsCNN
from .finetune import Finetune
from .graph import SBMGCN
from .mnist1d import MNIST1DCNN, MNIST1DGRU, MNIST1DMLP
from .overfit import TabularOverfit
from .stress import KINDS as STRESS_KINDS
from .stress import Stress
from .synthetic import LogReg, Quadratic, Rosenbrock


def _mlp_at_width(width: int) -> Callable[[], Workload]:
    return lambda: MNIST1DMLP(width=width)


def _stressed_mlp(kind: str) -> Callable[[], Workload]:
    return lambda: Stress(MNIST1DMLP(), kind)


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "mnist1d-mlp": MNIST1DMLP,
    "mnist1d-cnn": MNIST1DCNN,
    "mnist1d-gru": MNIST1DGRU,
    "digits-cnn": DigitsCNN,
    "charlm": CharLM,
    "logreg": LogReg,
    "quadratic": Quadratic,
    "quadratic-noisy": lambda: Quadratic(noise=0.01),
    "rosenbrock": Rosenbrock,
    "tabular-overfit": TabularOverfit,
    "finetune": Finetune,
    "sbm-gcn": SBMGCN,
}
#: the ``width`` study: mnist1d-mlp at widths 64 … 1024
for _w in (64, 128, 256, 512, 1024):
    WORKLOADS[f"mnist1d-mlp-w{_w}"] = _mlp_at_width(_w)
#: the ``stress`` study on mnist1d-mlp
for _k in STRESS_KINDS:
    WORKLOADS[f"stress-{_k}"] = _stressed_mlp(_k)

#: name groups usable on the command line in place of names
GROUPS: dict[str, list[str]] = {
    "width": [f"mnist1d-mlp-w{w}" for w in (64, 128, 256, 512, 1024)],
    "stress": [f"stress-{k}" for k in STRESS_KINDS],
}


def get_workload(name: str) -> Workload:
    """A fresh workload instance; ``ValueError`` naming the known ones otherwise."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(sorted(WORKLOADS))}")
    return WORKLOADS[name]()


def workload_names() -> list[str]:
    return sorted(WORKLOADS)


__all__ = ["SPLITS", "WORKLOADS", "GROUPS", "Workload", "get_workload", "workload_names"]
