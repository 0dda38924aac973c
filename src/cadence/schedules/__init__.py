"""Learning-rate schedules: pure, picklable callables ``step -> multiplier`` of a group's
base learning rate (peak 1.0), composable, with a torch ``LRScheduler`` adapter.

    sched = cadence.schedules.warmup_cosine(total_steps=10_000, warmup_steps=500, floor=0.1)
    sched(1234)                                  # a float multiplier
    scheduler = cadence.schedules.to_torch(optimizer, sched)   # a torch LRScheduler

The lower-case factories (``cosine``, ``warmup_cosine``, ``wsd``, ...) share one vocabulary
(``total_steps``, ``warmup_steps``, ``floor``, ...; see :mod:`cadence.schedules.factories`);
the CamelCase classes they return keep the argument names of their torch ``lr_scheduler``
or Hugging Face counterpart (see docs/schedules.md). Every schedule round-trips through
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
from cadence.schedules.factories import (
    constant,
    cosine,
    cyclic,
    exponential,
    inverse_sqrt,
    linear,
    multistep,
    one_cycle,
    polynomial,
    sgdr,
    step,
    warmup,
    warmup_cosine,
    warmup_stable_decay,
    wsd,
)
from cadence.schedules.preview import plot, preview
from cadence.schedules.torch_adapter import ScheduleLR, to_torch
from cadence.schedules.warmup import Warmup, WarmupStableDecay

#: the names a configuration string may call (``"warmup(100, then=cosine(900))"``): the
#: lower-case factories (cadence's vocabulary), the composition helpers, and the classes
#: under their own names with torch / Hugging Face arguments (``"Cosine(T_max=900)"``).
FACTORIES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "linear": linear,
    "step": step,
    "multistep": multistep,
    "exponential": exponential,
    "polynomial": polynomial,
    "cosine": cosine,
    "sgdr": sgdr,
    "one_cycle": one_cycle,
    "cyclic": cyclic,
    "inverse_sqrt": inverse_sqrt,
    "wsd": wsd,
    "warmup_stable_decay": warmup_stable_decay,
    "warmup": warmup,
    "warmup_cosine": warmup_cosine,
    "sequence": sequence,
    "join": join,
    "product": product,
    **{
        cls.__name__: cls
        for cls in (Constant, Linear, Step, MultiStep, Exponential, Polynomial, Cosine, SGDR,
                    OneCycle, Cyclic, InverseSqrt, Warmup, WarmupStableDecay)
    },
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
