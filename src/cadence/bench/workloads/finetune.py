"""``finetune``: a 1-D CNN pretrained inside the bench on MNIST-1D digits 0–4, then
fine-tuned with a fresh head on digits 5–9 from 200 labelled examples.

Pretraining (once per machine, cached): the body of ``mnist1d-cnn`` (three Conv1d layers of
25 channels) with a 5-way head, trained on every digit-0–4 example of the MNIST-1D train
split and of the 10,000-example test split (6,993 examples), AdamW lr 1e-2, wd 0.01,
5 % warm-up + cosine, 1,000 steps of batch 100, seed 0, one thread. It reaches ≈ 98 % on
the digit-0–4 examples of the selection split (``pretrain_acc``). Its ``state_dict`` is
stored in the cadence cache as an ``.npz`` keyed by these settings (read back without
unpickling anything), so each machine pretrains once (≈ 6–10 s of CPU).

Fine-tuning (the run): ``make_model()`` returns the pretrained ``body`` and a fresh
``head = Linear(125, 5)`` (initialised from the run's seed) for digits 5–9, labels 0–4.
train = the first 200 digit-5–9 examples of the published train split (34–45 per class);
selection = the 493 digit-5–9 examples of the published selection split; test = the 5,000
digit-5–9 examples of the 10,000-example test split. No digit 5–9 was seen in pretraining.
600 steps of batch 25 (75 epochs), evaluation every 50.

``param_group_spec`` (``{"head": ..., "body": ...}``) is what a method passes as
``cadence.param_groups(model, ..., groups=spec)``: the ``body`` groups are marked
``pretrained=True`` (no scale rule raises their lr), the ``head`` groups are new
(``pretrained_groups`` / ``new_groups`` name them). The cadence arms pass it through
``RunContext.param_group_spec``; the peers train every parameter at one lr, as their
users would.

What a quick sweep showed (``adamw-cosine``: AdamW + 5 % warm-up + cosine, wd 0.01,
600 steps, seed 0; final selection / test accuracy; "scratch" is the same network with its
body re-initialised at random, trained the same way)::

    lr                  3e-4   1e-3   3e-3   1e-2   3e-2   1e-1   3e-1
    pretrained  select  0.613  0.748  0.761  0.801  0.763  0.722  0.195
                test    0.643  0.760  0.758  0.781  0.762  0.706  0.200
    scratch     test    0.456  0.523  0.545  0.578  0.595  0.605    -

The pretrained body is worth 10-25 points at every rate up to 1e-1; at 3e-1 training
destroys it. Fitting only the head on the frozen body (a linear probe, lr 1e-2) gives
0.732 / 0.742, so fine-tuning the body at a well-chosen rate adds ≈ 4 points and a rate
that is too high loses them. Pretraining reached 0.978 on digits 0-4 and took ≈ 10 s of
CPU; one fine-tuning run is ≈ 3 s of CPU on one thread (timed on a busy 2-core machine).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import TensorClassification, cached_arrays
from .mnist1d import TEST_SAMPLES, TEST_SEED, mnist1d_arrays

PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
FINETUNE_CLASSES = (5, 6, 7, 8, 9)
FINETUNE_TRAIN = 200
PRETRAIN = {"steps": 1000, "batch": 100, "lr": 1e-2, "weight_decay": 0.01, "warmup": 0.05,
            "seed": 0}
CHANNELS = 25


class ConvBody(nn.Module):
    """``mnist1d-cnn`` without its head: three Conv1d (kernels 5/3/3, stride 2) → 125 features."""

    def __init__(self, channels: int = CHANNELS) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.features = channels * 5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x.unsqueeze(1)))
        h = torch.relu(self.conv2(h))
        h = torch.relu(self.conv3(h))
        return h.flatten(1)


class FinetuneNet(nn.Module):
    """``body`` (pretrained) → ``head`` (new)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = ConvBody()
        self.head = nn.Linear(self.body.features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _subset(
    x: np.ndarray, y: np.ndarray, classes: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isin(y, classes)
    return x[keep], (y[keep] - min(classes)).astype(np.int64)


def _pretrain() -> dict[str, np.ndarray]:
    """Train body + 5-way head on digits 0–4 (settings in ``PRETRAIN``); the state_dict
    as arrays plus ``pretrain_acc`` (digit-0–4 selection accuracy). Leaves the caller's
    RNG state and thread count as they were."""
    a = mnist1d_arrays()
    parts = [_subset(*a[s], PRETRAIN_CLASSES) for s in ("train", "test")]
    x = torch.as_tensor(np.concatenate([p[0] for p in parts]))
    y = torch.as_tensor(np.concatenate([p[1] for p in parts]))
    xs, ys = (torch.as_tensor(v) for v in _subset(*a["selection"], PRETRAIN_CLASSES))
    steps, bs = int(PRETRAIN["steps"]), int(PRETRAIN["batch"])
    warmup = int(round(PRETRAIN["warmup"] * steps))

    def multiplier(step: int) -> float:
        if step < warmup:
            return step / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        try:
            torch.set_num_threads(1)  # the same bits on every machine with this torch
            torch.manual_seed(int(PRETRAIN["seed"]))
            model = FinetuneNet(len(PRETRAIN_CLASSES))
            gen = torch.Generator().manual_seed(int(PRETRAIN["seed"]))
            opt = torch.optim.AdamW(
                model.parameters(), lr=PRETRAIN["lr"], weight_decay=PRETRAIN["weight_decay"]
            )
            sched = torch.optim.lr_scheduler.LambdaLR(opt, multiplier)
            per_epoch = x.shape[0] // bs
            perm = torch.randperm(x.shape[0], generator=gen)
            for step in range(steps):
                epoch, i = divmod(step, per_epoch)
                if i == 0 and epoch > 0:
                    perm = torch.randperm(x.shape[0], generator=gen)
                idx = perm[i * bs : (i + 1) * bs]
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                sched.step()
            with torch.no_grad():
                acc = (model(xs).argmax(1) == ys).float().mean().item()
        finally:
            torch.set_num_threads(threads)
    out = {k: v.detach().numpy().copy() for k, v in model.body.state_dict().items()}
    out["pretrain_acc"] = np.array(acc)
    return out


def pretrained_body() -> tuple[dict[str, torch.Tensor], float]:
    """The pretrained body's ``state_dict`` (keys relative to ``body``) and its digit-0–4
    selection accuracy, from the cache or pretrained now."""
    key = {"v": 1, "classes": list(PRETRAIN_CLASSES), "channels": CHANNELS, **PRETRAIN,
           "mnist1d_test": [TEST_SAMPLES, TEST_SEED]}
    arrays = cached_arrays("finetune-body", key, _pretrain)
    acc = float(arrays["pretrain_acc"])
    state = {k: torch.as_tensor(v) for k, v in arrays.items() if k != "pretrain_acc"}
    return state, acc


class Finetune(TensorClassification):
    name = "finetune"
    description = ("MNIST-1D CNN pretrained on digits 0-4, fine-tuned on 200 examples of "
                   "digits 5-9 (new head)")
    batch_size = 25
    steps = 600
    eval_every = 50
    pretrained_groups = ("body",)
    new_groups = ("head",)

    def __init__(self) -> None:
        super().__init__()
        self.body_state: dict[str, torch.Tensor] | None = None
        self.pretrain_acc: float | None = None

    @property
    def param_group_spec(self) -> dict[str, dict[str, Any]]:
        """``groups=`` for ``cadence.param_groups``: the new head, then the body marked
        ``pretrained=True`` (a fresh mapping each time, so a caller may change it)."""
        return {"head": {"pattern": "head"}, "body": {"pattern": "body", "pretrained": True}}

    def load_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        a = mnist1d_arrays()
        x, y = _subset(*a["train"], FINETUNE_CLASSES)
        return {
            "train": (x[:FINETUNE_TRAIN], y[:FINETUNE_TRAIN]),
            "selection": _subset(*a["selection"], FINETUNE_CLASSES),
            "test": _subset(*a["test"], FINETUNE_CLASSES),
        }

    def prepare(self) -> None:
        super().prepare()
        if self.body_state is None:
            self.body_state, self.pretrain_acc = pretrained_body()

    def make_model(self) -> nn.Module:
        self.prepare()
        assert self.body_state is not None
        model = FinetuneNet(len(FINETUNE_CLASSES))  # fresh head from the run's seed
        model.body.load_state_dict(self.body_state)
        return model

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "pretrain": {**PRETRAIN, "classes": list(PRETRAIN_CLASSES)},
            "finetune_classes": list(FINETUNE_CLASSES),
            "finetune_train": FINETUNE_TRAIN,
            "pretrained_groups": list(self.pretrained_groups),
            "new_groups": list(self.new_groups),
        }
