"""``tabular-overfit``: scikit-learn's bundled diabetes regression (442 patients, 10
features) and a wide one-hidden-layer MLP that memorises the training rows when trained
fast, so the best learning rate is the one that overfits least.

Splits from a seed-0 permutation: 242 train / 100 selection / 100 test. X and y are
standardised with the training rows' mean and standard deviation, so an MSE of 1 is the
predict-the-mean baseline (a least-squares linear fit: 0.501 selection, 0.485 test).
Model 10 → 1024 → 1 (ReLU), mini-batches of 64 (epoch permutations from the run's
generator), 1,500 steps. Metric:
MSE on standardised targets (primary ``"mse"``, lower is better; ``"loss"`` is the same
number, so ``observe(val_loss=...)`` sees the selection MSE).

What a quick sweep showed (``adamw-cosine``: AdamW, wd 0.01, 5 % warm-up + cosine, 1,500
steps, seed 0; selection MSE at every 10 % of the run, then final train / selection / test
MSE)::

    lr     selection MSE over the run              train  select  test
    1e-5   0.99 0.80 0.71 0.65 0.62 ... 0.59 0.58  0.547  0.585   0.541   under-fits
    3e-5   0.74 0.58 0.54 0.52 0.52 ... 0.52 0.52  0.474  0.519   0.458   best
    1e-4   0.54 0.52 0.53 0.54 0.55 ... 0.57 0.57  0.393  0.567   0.470
    3e-4   0.52 0.56 0.61 0.64 0.66 ... 0.71 0.71  0.245  0.707   0.525
    1e-3   0.60 0.71 0.80 0.83 0.84 ... 0.86 0.86  0.030  0.863   0.624
    1e-2   0.92 1.27 0.93 0.91 0.94 ... 0.95 0.95  0.000  0.947   0.752

From 1e-4 up, the selection MSE is lowest early and rises for the rest of the run while
the training MSE falls towards 0: the textbook overfit that a validation signal
(``observe``) can see and a fixed schedule cannot. One run is ≈ 3 s of CPU on one thread
(timed on a busy 2-core machine).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import EpochOrder, Workload

TRAIN, SELECTION = 242, 100  # the remaining 100 rows are the test split


class WideMLP(nn.Module):
    """``d → width → 1`` with ReLU; the last layer is ``head`` (cadence's head rule)."""

    def __init__(self, d_in: int, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, width)
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc1(x))).squeeze(-1)


class TabularOverfit(Workload):
    name = "tabular-overfit"
    task = "regression"
    primary = "mse"
    higher_is_better = False
    description = "sklearn diabetes (242/100/100), MLP 10-1024-1, overfits when trained fast"
    steps = 1500
    batch_size = 64
    eval_every = 100
    width = 1024

    def __init__(self) -> None:
        self.data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._order = EpochOrder()

    def prepare(self) -> None:
        if self.data:
            return
        try:
            from sklearn.datasets import load_diabetes
        except ImportError as err:  # pragma: no cover - depends on the extra
            raise ImportError(
                "tabular-overfit needs scikit-learn: pip install 'cadence[bench]'"
            ) from err
        d = load_diabetes()  # bundled with scikit-learn: nothing is downloaded
        x, y = np.asarray(d.data, dtype=np.float64), np.asarray(d.target, dtype=np.float64)
        perm = np.random.RandomState(0).permutation(len(y))
        parts = {
            "train": perm[:TRAIN],
            "selection": perm[TRAIN : TRAIN + SELECTION],
            "test": perm[TRAIN + SELECTION :],
        }
        tr = parts["train"]
        mx, sx = x[tr].mean(0), x[tr].std(0)
        my, sy = y[tr].mean(), y[tr].std()
        for split, idx in parts.items():
            self.data[split] = (
                torch.as_tensor((x[idx] - mx) / sx, dtype=torch.float32),
                torch.as_tensor((y[idx] - my) / sy, dtype=torch.float32),
            )

    def make_model(self) -> nn.Module:
        self.prepare()
        return WideMLP(self.data["train"][0].shape[1], self.width)

    def batch(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.prepare()
        x, y = self.data["train"]
        idx = self._order.indices(x.shape[0], self.batch_size, step, gen)
        return x[idx], y[idx]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        self.prepare()
        x, y = self.data[split]
        was_training = model.training
        model.eval()
        mse = F.mse_loss(model(x), y).item()
        model.train(was_training)
        return {"loss": mse, "mse": mse}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "width": self.width, "splits": [TRAIN, SELECTION, 100]}
