"""scikit-learn's bundled 8×8 digits (1,797 images), small 2-D CNN with BatchNorm.

Fixed split from a seed-0 permutation: 1,197 train / 300 selection / 300 test. BatchNorm
is there on purpose: it breaks some learning-rate-free methods and needs schedule-free's
statistics recalibration.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from .base import TensorClassification


class DigitsCNN(TensorClassification):
    name = "digits-cnn"
    description = "sklearn digits 8x8, 2-layer CNN with BatchNorm"
    batch_size = 64
    steps = 1500
    eval_every = 100
    train_eval_size = 1197

    def load_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        try:
            from sklearn.datasets import load_digits
        except ImportError as err:  # pragma: no cover - depends on the extra
            raise ImportError(
                "digits-cnn needs scikit-learn: pip install 'cadence[bench]'"
            ) from err
        d = load_digits()
        x = (d.images.astype(np.float32) / 16.0 - 0.5)[:, None]  # (N, 1, 8, 8) in [-.5, .5]
        y = d.target.astype(np.int64)
        perm = np.random.RandomState(0).permutation(len(y))
        tr, se, te = perm[:1197], perm[1197:1497], perm[1497:]
        return {"train": (x[tr], y[tr]), "selection": (x[se], y[se]), "test": (x[te], y[te])}

    def make_model(self) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 10),
        )


