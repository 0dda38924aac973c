"""Learning-rate schedules: pure, picklable callables ``step -> multiplier`` of a group's
base learning rate (peak 1.0), composable, with a torch ``LRScheduler`` adapter.

    sched = cadence.schedules.warmup_cosine(total_steps=10_000, warmup_steps=500, floor=0.1)
    sched(1234)                                  # a float multiplier
    scheduler = cadence.schedules.to_torch(optimizer, sched)   # a torch LRScheduler

Names and arguments follow torch's ``lr_scheduler`` and Hugging Face's schedules where a
counterpart exists (see docs/schedules.md). Every schedule round-trips through
``to_dict()`` / :func:`from_dict`.
"""

from collections.abc import Callable

from cadence.schedules.base import Schedule, from_dict, kinds
from cadence.schedules.compose import Product, Sequential, join, product, sequence
from cadence.schedules.cyclic import SGDR, Cyclic, OneCycle
from cadence.schedules.decay import (
    Constant,
    Cosine,
    Exponential,
    InverseSqrt,
    Linear,
    MultiStep,
    Polynomial,
    Step,
)
from cadence.schedules.epochs import epochs_to_steps
from cadence.schedules.preview import plot, preview
from cadence.schedules.torch_adapter import ScheduleLR, to_torch
from cadence.schedules.warmup import Warmup, WarmupStableDecay, warmup, warmup_cosine, wsd

# lower-case spellings of the kinds, as used in configuration strings and the CLI
constant = Constant
linear = Linear
step = Step
multistep = MultiStep
exponential = Exponential
polynomial = Polynomial
cosine = Cosine
sgdr = SGDR
one_cycle = OneCycle
cyclic = Cyclic
inverse_sqrt = InverseSqrt
warmup_stable_decay = wsd

#: the names a configuration string may call (``"warmup(100, then=cosine(900))"``)
FACTORIES: dict[str, Callable[..., Schedule]] = {
    "constant": Constant,
    "linear": Linear,
    "step": Step,
    "multistep": MultiStep,
    "exponential": Exponential,
    "polynomial": Polynomial,
    "cosine": Cosine,
    "sgdr": SGDR,
    "one_cycle": OneCycle,
    "cyclic": Cyclic,
    "inverse_sqrt": InverseSqrt,
    "wsd": wsd,
    "warmup_stable_decay": wsd,
    "warmup": warmup,
    "warmup_cosine": warmup_cosine,
    "sequence": sequence,
    "join": join,
    "product": product,
}

__all__ = [
    "FACTORIES",
    "SGDR",
    "Constant",
    "Cosine",
    "Cyclic",
    "Exponential",
    "InverseSqrt",
    "Linear",
    "MultiStep",
    "OneCycle",
    "Polynomial",
    "Product",
    "Schedule",
    "ScheduleLR",
    "Sequential",
    "Step",
    "Warmup",
    "WarmupStableDecay",
    "constant",
    "cosine",
    "cyclic",
    "epochs_to_steps",
    "exponential",
    "from_dict",
    "inverse_sqrt",
    "join",
    "kinds",
    "linear",
    "multistep",
    "one_cycle",
    "plot",
    "polynomial",
    "preview",
    "product",
    "sequence",
    "sgdr",
    "step",
    "to_torch",
    "warmup",
    "warmup_cosine",
    "warmup_stable_decay",
    "wsd",
]
