"""MNIST-1D (Greydanus 2020), regenerated offline with ``mnist1d.data.make_dataset``.

Splits: ``train`` is the published 4,000-example training set (``seed=42``, 5,000 samples,
80 % split). ``selection`` is the published 1,000-example test split: it is held out from
training, and our reported numbers come from a separate ``test`` split of 10,000 examples
generated with ``seed=4242`` (1,000 examples carry ±1.5 % binomial error at 68 %, too much
for a 2 % robustness band). Models follow ``notebooks/models.py`` of the mnist1d repo.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .base import TensorClassification, cached_arrays

TEST_SAMPLES = 10_000
TEST_SEED = 4242


def _generate(num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:  # pragma: no cover - depends on the extra
        raise ImportError(
            "the MNIST-1D workloads need the 'mnist1d' package: pip install 'cadence[bench]'"
        ) from err
    args = get_dataset_args()
    args.num_samples = num_samples
    args.train_split = 1.0
    args.seed = seed
    state = np.random.get_state()  # make_dataset reseeds the global RNG; restore it
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    return d["x"].astype(np.float32), d["y"].astype(np.int64)


def mnist1d_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three MNIST-1D splits as numpy arrays (cached under the cadence cache dir)."""

    def build() -> dict[str, np.ndarray]:
        # The published set: 5,000 samples, seed 42, first 80 % train. Generating all 5,000
        # with train_split=1.0 yields the same arrays, then we split as make_dataset does.
        x, y = _generate(5000, 42)
        xt, yt = _generate(TEST_SAMPLES, TEST_SEED)
        return {"x": x[:4000], "y": y[:4000], "xs": x[4000:], "ys": y[4000:], "xt": xt, "yt": yt}

    a = cached_arrays("mnist1d", {"v": 1, "test": [TEST_SAMPLES, TEST_SEED]}, build)
    return {"train": (a["x"], a["y"]), "selection": (a["xs"], a["ys"]), "test": (a["xt"], a["yt"])}


class MLP(nn.Module):
    """40 → h → h → 10 with ReLU and a residual second layer (mnist1d's MLP)."""

    def __init__(self, width: int = 100) -> None:
        super().__init__()
        self.fc1 = nn.Linear(40, width)
        self.fc2 = nn.Linear(width, width)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        h = h + torch.relu(self.fc2(h))
        return self.head(h)


class ConvNet(nn.Module):
    """Three Conv1d layers of 25 channels (kernels 5/3/3, stride 2) and a linear head."""

    def __init__(self, channels: int = 25) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.head = nn.Linear(channels * 5, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)
        h = torch.relu(self.conv1(h))
        h = torch.relu(self.conv2(h))
        h = torch.relu(self.conv3(h))
        return self.head(h.flatten(1))


class GRUNet(nn.Module):
    """Bidirectional GRU (hidden 6) over the 40 time steps, linear read-out of all states."""

    def __init__(self, hidden: int = 6) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(40 * 2 * hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x.unsqueeze(-1))
        return self.head(out.flatten(1))


class _MNIST1D(TensorClassification):
    batch_size = 100
    steps = 6000
    eval_every = 250

    def load_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return mnist1d_arrays()


class MNIST1DMLP(_MNIST1D):
    """MNIST-1D, residual MLP of width ``width`` (100 as published; 64/256/1024 for ``width``)."""

    def __init__(self, width: int = 100) -> None:
        super().__init__()
        self.width = width
        self.name = "mnist1d-mlp" if width == 100 else f"mnist1d-mlp-w{width}"
        self.description = f"MNIST-1D, MLP 40-{width}-{width}-10"

    def make_model(self) -> nn.Module:
        return MLP(self.width)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "width": self.width}


class MNIST1DCNN(_MNIST1D):
    name = "mnist1d-cnn"
    description = "MNIST-1D, 1-D CNN with 3 conv layers of 25 channels"

    def make_model(self) -> nn.Module:
        return ConvNet()


class MNIST1DGRU(_MNIST1D):
    name = "mnist1d-gru"
    description = "MNIST-1D, bidirectional GRU, hidden 6"
    steps = 3000

    def make_model(self) -> nn.Module:
        return GRUNet()
