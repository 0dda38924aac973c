"""The contracts every part of cadence agrees on: knobs, proposals, signals, controllers.

A training step flows measure → guard → propose → arbitrate → apply (see docs/regime.md).
Signals measure, controllers propose, the arbiter decides, and only the knobs write into
``optimizer.param_groups``. This module holds the small types that connect those stages
and depends on nothing else in cadence.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: The hyper-parameters a controller may change. ``momentum`` means SGD momentum or Adam's
#: beta1; ``beta2`` is Adam's second-moment decay; ``clip_norm`` is the gradient-clipping
#: threshold (a regime-level knob, stored per group for uniformity).
KNOBS: tuple[str, ...] = ("lr", "momentum", "beta2", "weight_decay", "clip_norm")

#: Key of a group's name inside a torch param group (set by ``cadence.param_groups``;
#: the Regime names unnamed groups ``group0``, ``group1``, …).
GROUP_NAME_KEY = "name"


@dataclass(frozen=True)
class TrialSpec:
    """Makes a proposal *tentative*: the Regime's trials apply it, judge it on the loss
    over ``window`` steps after ``burn_in`` steps, and keep it or revert it (an Event each).

    ``horizon`` is how far ahead (in steps) the judge projects both arms' trends before
    comparing them: 0 compares levels only, a longer horizon weighs progress (slope) more,
    which counters the short-horizon bias towards smaller learning rates.
    ``only_if_stalled`` opens the trial only when the incumbent's loss is not falling
    significantly (its trend's slope is within 2 standard errors of 0): a cut of the lr
    then has a progress to win, not merely a noise floor to lower.
    """

    window: int
    burn_in: int = 0
    horizon: int = 0
    only_if_stalled: bool = False  # open only while the loss is not clearly falling

    def __post_init__(self) -> None:
        for name in ("window", "burn_in", "horizon"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "window" else 0):
                raise ValueError(f"TrialSpec.{name} must be an int >= "
                                 f"{1 if name == 'window' else 0}, got {v!r}")


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial, as controllers see it in ``Context.trials``."""

    id: int
    source: str
    knob: str
    factor: float
    start: int
    end: int
    kept: bool
    effect: float  # estimated change of the judged quantity (log-loss); < 0 is better
    z: float = math.nan  # effect / its standard error (nan: aborted, not judged)


@dataclass(frozen=True)
class Proposal:
    """A controller's request to change one knob of one group (or of every group).

    Exactly one of ``factor`` (multiply the current value; for ``lr`` it multiplies the
    controller multiplier that sits on top of base × schedule) or ``value`` (an absolute
    target the arbiter moves towards, within its per-step clamp) is set.
    ``group=None`` applies to every group. ``urgent=True`` (guards and trials) bypasses
    the per-step clamp, never the absolute bounds. ``trial`` makes it tentative (see
    :class:`TrialSpec`): only ``factor`` proposals can be trials. ``restart=True`` (an
    ``lr`` factor, from a controller that declares ``may_restart``) asks the Regime to
    start over from the initial weights with the lr scaled by ``factor`` and the schedule
    replayed over the steps that are left: the answer to a rate that overfits before
    validation could first look.
    """

    knob: str
    factor: float | None = None
    value: float | None = None
    group: str | None = None
    reason: str = ""
    source: str = ""
    urgent: bool = False
    trial: TrialSpec | None = None
    restart: bool = False

    def __post_init__(self) -> None:
        if self.knob not in KNOBS:
            raise ValueError(f"Proposal.knob={self.knob!r} is not one of {KNOBS}")
        if (self.factor is None) == (self.value is None):
            raise ValueError("Proposal needs exactly one of factor= or value=")
        amount = self.factor if self.factor is not None else self.value
        assert amount is not None  # exactly one of factor/value is set (checked above)
        if amount != amount or amount in (float("inf"), float("-inf")) or amount < 0:
            raise ValueError(
                f"Proposal for {self.knob!r} has a non-finite or negative amount: {amount!r}"
            )
        if self.trial is not None and self.factor is None:
            raise ValueError("a trial Proposal needs factor= (its revert divides by it)")
        if self.restart and (self.knob != "lr" or self.factor is None or self.trial):
            raise ValueError("a restart Proposal is an lr factor= (not a trial)")


#: Flat mapping of signal name → float. Per-group values use the key ``f"{name}/{group}"``
#: (e.g. ``"grad_norm/head"``). Flat floats pack into one tensor for the distributed
#: all-reduce, so every rank decides from identical numbers.
Signals = Mapping[str, float]


@dataclass
class GroupView:
    """Read-only view of one param group handed to controllers (they never see the optimizer)."""

    name: str
    values: dict[str, float]          # current effective value per knob the optimizer has
    base: dict[str, float]            # base values (before schedule and controller multipliers)
    num_params: int = 0               # number of scalar parameters in the group
    depth: int | None = None          # layer depth when cadence.param_groups set it
    pretrained: bool = False          # the group holds pretrained weights (fine-tuning)


@dataclass
class Context:
    """What a controller may know about the run besides the signals."""

    step: int                                 # real optimizer updates done so far
    total_steps: int | None
    groups: list[GroupView]
    warmup_steps: int = 0
    schedule_multiplier: dict[str, float] = field(default_factory=dict)  # per group, this step
    metrics: dict[str, float] = field(default_factory=dict)  # latest regime.observe(...) values
    metrics_step: int | None = None           # step at which ``metrics`` were observed
    num_params: int = 0                       # trainable scalars in the whole optimizer
    is_distributed: bool = False
    world_size: int = 1
    trials: tuple[TrialOutcome, ...] = ()     # finished trials, oldest first
    trial_open: bool = False                  # a trial is running now

    @property
    def in_warmup(self) -> bool:
        return self.step < self.warmup_steps

    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]


@dataclass
class MeasureContext:
    """What a signal may read when it measures, once per real optimizer update.

    ``params_by_group`` lists the trainable tensors of each group (frozen ones excluded),
    gradients already unscaled (AMP) and accumulated. ``optimizer`` is given so signals can
    *reuse* optimizer state (e.g. Adam's ``exp_avg_sq``) instead of duplicating it;
    signals must never write into it.
    """

    step: int
    loss: float
    params_by_group: dict[str, list[Any]]     # group name -> list[torch.Tensor]
    optimizer: Any
    grad_norm: float                          # global gradient norm, computed once
    micro_grad_norms: list[float] = field(default_factory=list)  # per micro-batch, if accumulating
    closure: Callable[[], Any] | None = None  # loss closure, for opt-in probes (Hessian)


class Part:
    """Base of every controller and signal: a name, declared needs, config and state.

    * ``name`` — the Event source and the key of its state in ``regime.state_dict()``; a
      class attribute (the registered name), which a ``name=`` constructor argument may
      override for a second instance.
    * ``requires`` — names of the signals this part reads; the Regime creates the
      registered ones nobody supplied, with the keyword arguments in ``signal_options``.
    * ``get_config()`` — the constructor arguments, recorded when the object is built
      (defaults filled in), so ``type(p)(**p.get_config())`` rebuilds an equal part and a
      configuration file can never forget one. Arguments must be plain data.
    * ``state_dict()`` / ``load_state_dict()`` — what changes while training (plain data
      only: a run folder is read with ``torch.load(weights_only=True)``).
    """

    name: str = ""
    requires: tuple[str, ...] = ()
    signal_options: Mapping[str, Mapping[str, Any]] = MappingProxyType({})
    _config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)
        if any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
            raise TypeError(f"{cls.__name__}.__init__ may not take *args (config needs names)")

        @functools.wraps(init)
        def recording_init(self: Part, *args: Any, **kw: Any) -> None:
            if type(self).__init__ is recording_init:  # the outermost constructor records
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                config = dict(bound.arguments)
                config.pop(next(iter(signature.parameters)))  # self
                for p in signature.parameters.values():
                    if p.kind is p.VAR_KEYWORD:
                        config.update(config.pop(p.name))
                self._config = config
            init(self, *args, **kw)

        cls.__init__ = recording_init  # type: ignore[method-assign,assignment]

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (defaults included): ``type(self)(**config)`` rebuilds it."""
        return copy.deepcopy(getattr(self, "_config", {}))

    def state_dict(self) -> dict[str, Any]:
        """What changed since construction (plain Python data); empty for stateless parts."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class Controller(Part):
    """A decision rule. ``propose`` must be deterministic given (signals, context, own
    state) so every rank decides the same; it never touches the optimizer.
    ``proposes_trials = True`` declares that it makes tentative proposals (``TrialSpec``),
    so the Regime runs its trials part (and its per-step bookkeeping) only when needed.
    ``may_restart = True`` declares that it may propose a restart (``Proposal.restart``),
    so the Regime keeps a copy of the initial weights."""

    proposes_trials: bool = False
    may_restart: bool = False

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        raise NotImplementedError(f"{type(self).__name__} must define propose()")


class Signal(Part):
    """A measurement. ``measure`` returns raw local numbers (reduced across ranks by the
    Regime, mean); ``update`` turns reduced numbers into derived ones (EMAs, slopes) and
    returns every key it owns. ``every`` > 1 makes a costly probe run every k steps only.
    ``after_step`` sees parameters after ``optimizer.step()`` (update ratios); the Regime
    calls it only for signals that override it."""

    every: int = 1

    def measure(self, ctx: MeasureContext) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define measure()")

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        """Derived values from the rank-reduced measurements (pass-through by default)."""
        return dict(reduced)

    def after_step(self, ctx: MeasureContext) -> None:
        """Called after ``optimizer.step()`` on steps the signal was measured."""


class Registry:
    """Name → factory, so presets and configuration files switch parts on by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            self._items[name] = factory
            return factory

        return deco

    def factory(self, name: str) -> Callable[..., Any]:
        """The factory registered as ``name``; ``ValueError`` listing the known names."""
        if name not in self._items:
            raise ValueError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def create(self, name: str, /, **kwargs: Any) -> Any:
        return self.factory(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


CONTROLLERS = Registry("controller")
SIGNALS = Registry("signal")
