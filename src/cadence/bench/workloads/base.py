"""The workload contract: offline data, a model factory, a loss, and an evaluation.

A workload is a small object the runner drives step by step. Randomness is split so arms
can be paired: ``make_model`` is called right after ``torch.manual_seed(seed)`` (same
initialisation for every method) and ``batch`` draws from a generator seeded only by the
run's seed (same data order for every method).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Splits every workload evaluates: ``train`` (a fixed training subset, for the training
#: loss and the divergence check), ``selection`` (for choosing hyper-parameters and for
#: plateau-style methods) and ``test`` (reported, never used for any decision).
SPLITS = ("train", "selection", "test")


class Workload:
    """Base class. Subclasses set the class attributes and implement the four methods.

    ``primary`` is the metric key judged on the selection and test splits (``"acc"`` for
    classification, ``"loss"`` otherwise); ``higher_is_better`` says which way it points.
    ``family`` picks the learning-rate grid convention and ``steps`` / ``batch_size`` /
    ``eval_every`` are the default budget (see docs/benchmarks.md for why each).
    """

    name: str = ""
    task: str = "classification"  # "classification" | "lm" | "regression"
    primary: str = "acc"
    higher_is_better: bool = True
    steps: int = 1000
    batch_size: int = 100
    eval_every: int = 100
    description: str = ""
    #: losses below this count as solved (known-optimum workloads: suboptimality 1e-6),
    #: so ratios are not taken between numbers at float32 round-off
    metric_floor: float | None = None

    def prepare(self) -> None:
        """Build or load cached data; called once in the parent before workers start."""

    def make_model(self) -> nn.Module:
        raise NotImplementedError

    def batch(self, step: int, gen: torch.Generator) -> Any:
        """Training batch for ``step``; all randomness must come from ``gen``."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        raise NotImplementedError

    def perturb(self, step: int, batch: Any, gen: torch.Generator) -> Any:
        """Hook for stress workloads: change a batch before the loss (default: none)."""
        return batch

    def perturb_loss(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        """Hook for stress workloads: change the loss before backward (default: none)."""
        return loss

    def info(self) -> dict[str, Any]:
        """What the database stores about the workload, so reports need no imports."""
        return {
            "workload": self.name,
            "task": self.task,
            "primary": self.primary,
            "higher_is_better": self.higher_is_better,
            "default_steps": self.steps,
            "batch_size": self.batch_size,
            "metric_floor": self.metric_floor,
        }

    def has_batchnorm(self, model: nn.Module) -> bool:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())

    def recalibrate_batchnorm(self, model: nn.Module, gen_seed: int = 0, batches: int = 10) -> None:
        """Recompute BatchNorm running statistics at the current weights (schedule-free
        evaluates at averaged weights, so the running stats gathered at y are stale)."""
        if not self.has_batchnorm(model):
            return
        was_training = model.training
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the recalibration batches
        model.train()
        gen = torch.Generator().manual_seed(gen_seed)
        # recalibration batches come from their own order, so the run's training order
        # (paired across methods by seed) is not disturbed
        training_order = getattr(self, "_order", None)
        if training_order is not None:
            self._order = EpochOrder()
        try:
            with torch.no_grad():
                for i in range(batches):
                    x, _ = self.batch(i, gen)
                    model(x)
        finally:
            if training_order is not None:
                self._order = training_order
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.1
        model.train(was_training)


class EpochOrder:
    """Training-batch indices, epoch by epoch, from a permutation of the ``n`` examples.

    A new permutation is drawn from ``gen`` whenever a step falls in another epoch than
    the previous call's; the partial batch at the end of an epoch is dropped.
    """

    def __init__(self) -> None:
        self._perm: torch.Tensor | None = None
        self._epoch = -1

    def indices(self, n: int, batch_size: int, step: int, gen: torch.Generator) -> torch.Tensor:
        per_epoch = n // batch_size
        epoch, i = divmod(step, per_epoch)
        if self._perm is None or epoch != self._epoch:
            self._perm = torch.randperm(n, generator=gen)
            self._epoch = epoch
        return self._perm[i * batch_size : (i + 1) * batch_size]


class TensorClassification(Workload):
    """A classification workload over in-memory tensors: ``self.data[split] = (x, y)``.

    Batches are drawn epoch by epoch from a permutation made by the run's generator
    (``EpochOrder``).
    """

    task = "classification"
    primary = "acc"
    higher_is_better = True
    train_eval_size = 1000

    def __init__(self) -> None:
        self.data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._order = EpochOrder()

    def load_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def prepare(self) -> None:
        if self.data:
            return
        arrays = self.load_arrays()
        for split, (x, y) in arrays.items():
            self.data[split] = (
                torch.as_tensor(x, dtype=torch.float32),
                torch.as_tensor(y, dtype=torch.long),
            )

    def batch(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.prepare()
        x, y = self.data["train"]
        idx = self._order.indices(x.shape[0], self.batch_size, step, gen)
        return x[idx], y[idx]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        self.prepare()
        x, y = self.data[split]
        if split == "train":
            x, y = x[: self.train_eval_size], y[: self.train_eval_size]
        was_training = model.training
        model.eval()
        logits = torch.cat([model(x[i : i + 1000]) for i in range(0, x.shape[0], 1000)])
        model.train(was_training)
        loss = F.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
        return {"loss": loss, "acc": acc}


def cache_dir() -> Path:
    """``$CADENCE_CACHE`` or ``~/.cache/cadence`` (falls back to the temp dir)."""
    root = os.environ.get("CADENCE_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "cadence"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = Path(tempfile.gettempdir()) / "cadence-cache"
        path.mkdir(parents=True, exist_ok=True)
    return path


def cached_arrays(
    tag: str, key: dict[str, Any], build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Load ``build()``'s arrays from the cache, keyed by ``tag`` and a hash of ``key``;
    build and write them atomically on a miss (workers may race; the last rename wins)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{tag}-{digest}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    arrays = build()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    named: dict[str, Any] = arrays  # savez's **kwds: each array under its own name
    np.savez(tmp, **named)
    os.replace(tmp, path)
    return arrays
