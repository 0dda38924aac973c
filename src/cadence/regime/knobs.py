"""Knobs: the only writer of hyper-parameters into ``optimizer.param_groups``.

Hyper-parameters live in the groups, as in torch; nothing here keeps a second copy that
could drift. Each group holds, under cadence's own keys:

* ``cadence_base_<knob>`` — the value the user set, stored once;
* ``cadence_lr_mult`` — the controllers' learning-rate multiplier;
* ``cadence_clip_norm`` — the clipping threshold, when clipping by value is on.

The effective lr is ``base × schedule(step) × multiplier``; the other knobs are read back
from the group (so ``group["weight_decay"] = 0.5`` done by hand shows in ``values()``) and
changed by value. Where each knob lives in a torch group:

============ ================================================================
lr           ``group["lr"]`` (a float, or a tensor written in place with ``fill_``)
momentum     ``group["momentum"]`` (SGD, RMSprop) or ``group["betas"][0]`` (Adam family)
beta2        ``group["betas"][1]``
weight_decay ``group["weight_decay"]``
clip_norm    ``group["cadence_clip_norm"]`` (the Regime's global clipping threshold)
============ ================================================================

Knobs also clips the gradients (clipping is a knob like the others) and turns the
arbiter's decisions into writes and Events.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from cadence.checks import warn_user
from cadence.events import Event
from cadence.protocol import KNOBS, GroupView, Proposal
from cadence.regime.arbiter import Arbiter
from cadence.regime.bounds import bounds_for
from cadence.regime.schedule import GroupSchedules

BASE_PREFIX = "cadence_base_"
LR_MULT_KEY = "cadence_lr_mult"
CLIP_KEY = "cadence_clip_norm"


def base_key(knob: str) -> str:
    """Key under which a group's base value of ``knob`` is stored (``cadence_base_lr``...)."""
    return BASE_PREFIX + knob


def _effective_lr(group: Mapping[str, Any], schedule: float) -> float:
    """``cadence_base_lr × schedule × cadence_lr_mult``: the lr the group steps with."""
    return float(group[BASE_PREFIX + "lr"]) * schedule * float(group[LR_MULT_KEY])


def has_knob(group: Mapping[str, Any], knob: str) -> bool:
    """True iff ``group`` holds a value for ``knob``."""
    if knob == "lr":
        return "lr" in group
    if knob == "momentum":
        return "momentum" in group or _has_beta(group, 0)
    if knob == "beta2":
        return _has_beta(group, 1)
    if knob == "weight_decay":
        return "weight_decay" in group
    if knob == "clip_norm":
        return CLIP_KEY in group
    raise ValueError(f"unknown knob {knob!r}")


def read_knob(group: Mapping[str, Any], knob: str) -> float:
    """Current value of ``knob`` in ``group`` as a Python float."""
    if knob == "momentum" and "momentum" not in group:
        return _as_float(group["betas"][0])
    if knob == "beta2":
        return _as_float(group["betas"][1])
    return _as_float(group[CLIP_KEY if knob == "clip_norm" else knob])


def _has_beta(group: Mapping[str, Any], i: int) -> bool:
    betas = group.get("betas")
    return isinstance(betas, (tuple, list)) and len(betas) > i


def _as_float(v: Any) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


def write_knob(group: dict[str, Any], knob: str, value: float) -> None:
    """Write ``value`` for ``knob`` into ``group`` (tensors are updated in place)."""
    value = float(value)
    if knob == "clip_norm":
        group[CLIP_KEY] = value
    elif knob == "beta2" or (knob == "momentum" and "momentum" not in group):
        i = 1 if knob == "beta2" else 0
        betas = group["betas"]
        if isinstance(betas[i], torch.Tensor):
            betas[i].fill_(value)
            return
        new = list(betas)
        new[i] = value
        group["betas"] = tuple(new) if isinstance(betas, tuple) else new
    elif isinstance(group[knob], torch.Tensor):
        group[knob].fill_(value)  # capturable / tensor lr: keep the same tensor object
    else:
        group[knob] = value


class Knobs:
    """Reads and writes every group's knobs; computes the lr; clips; emits change Events.

    Args:
        optimizer: the torch optimizer whose groups are controlled.
        names: one unique name per group.
        schedules: the per-group lr schedules.
        user_bounds: ``{knob: (lo, hi)}`` absolute bounds (lr: on base × multiplier).
        clip_norm: a fixed clipping threshold to store in every group, or ``None``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        names: list[str],
        schedules: GroupSchedules,
        user_bounds: Mapping[str, tuple[float, float]],
        clip_norm: float | None,
    ) -> None:
        self.optimizer = optimizer
        self.names = names
        self.schedules = schedules
        self.user_bounds = dict(user_bounds)
        self._source: list[dict[str, Any]] = optimizer.param_groups
        self._by_name: dict[str, dict[str, Any]] = dict(zip(names, self._source, strict=True))
        self.available: dict[str, tuple[str, ...]] = {}
        for n, g in self.groups.items():
            if clip_norm is not None:
                g.setdefault(CLIP_KEY, clip_norm)
            self.available[n] = tuple(k for k in KNOBS if has_knob(g, k))
            for k in self.available[n]:
                self._ensure_base(g, k)
            g.setdefault(LR_MULT_KEY, 1.0)
        self.num_params = {
            n: sum(p.numel() for p in g["params"] if p.requires_grad)
            for n, g in self.groups.items()
        }
        self.warned: set[str] = set()
        self._written: dict[str, float] = {}  # the lr each group was last given, to notice
        self._adopted: set[str] = set()       # changes made outside (warned once per group)
        self._sched_step: int | None = None
        self._sched: dict[str, float] = {}
        self._bounds = self._controlled_bounds()

    @staticmethod
    def _ensure_base(group: dict[str, Any], knob: str) -> None:
        """Store the group's value as its base once (a base restored with the optimizer's
        state is kept). A torch ``LRScheduler`` attached before the Regime has already
        scaled ``group["lr"]``; its ``initial_lr`` is the lr the user set."""
        key = base_key(knob)
        if key not in group:
            user = group.get("initial_lr", group["lr"]) if knob == "lr" else None
            group[key] = _as_float(user) if user is not None else read_knob(group, knob)

    def _controlled_bounds(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Bounds in the arbiter's units: the lr multiplier for ``lr``, values otherwise."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for n in self.names:
            out[n] = {}
            for k in self.available[n]:
                base = self.base(n, k)
                lo, hi = bounds_for(k, base, self.user_bounds)
                if k == "lr":
                    lo, hi = (lo / base, hi / base) if base > 0 else (0.0, math.inf)
                out[n][k] = (lo, hi)
        return out

    @property
    def groups(self) -> dict[str, dict[str, Any]]:
        """``{name: param group}``, following ``optimizer.load_state_dict``, which replaces
        the group dicts (and their list) with new ones."""
        if self.optimizer.param_groups is not self._source:
            self._source = self.optimizer.param_groups
            self._by_name = dict(zip(self.names, self._source, strict=True))
        return self._by_name

    # -- reading ------------------------------------------------------------------------------
    def base(self, name: str, knob: str) -> float:
        return float(self.groups[name][base_key(knob)])

    def multiplier(self, name: str) -> float:
        return float(self.groups[name][LR_MULT_KEY])

    def schedule(self, name: str, step: int) -> float:
        """Schedule multiplier of group ``name`` at ``step`` (memoised for one step)."""
        return self.multipliers(step)[name]

    def multipliers(self, step: int) -> dict[str, float]:
        """Every group's schedule multiplier at ``step``, checked (memoised for one step)."""
        if self._sched_step != step:
            values = self.schedules.at(step)
            for n, v in values.items():
                if not (v >= 0.0 and math.isfinite(v)):  # NaN fails the first test too
                    raise ValueError(
                        f"the lr schedule of group {n!r} gave {v!r} at step {step}; a schedule "
                        "multiplier must be a finite number >= 0 (a negative lr would ascend "
                        "the loss, a NaN one would poison the weights)"
                    )
            self._sched_step, self._sched = step, values
        return self._sched

    def lr(self, name: str, step: int) -> float:
        return _effective_lr(self.groups[name], self.schedule(name, step))

    def value(self, name: str, knob: str, step: int) -> float:
        return self.lr(name, step) if knob == "lr" else read_knob(self.groups[name], knob)

    def values(self, step: int) -> dict[str, dict[str, float]]:
        """``{group: {knob: effective value}}`` for update number ``step``."""
        return {n: {k: self.value(n, k, step) for k in self.available[n]} for n in self.names}

    def views(self, step: int) -> list[GroupView]:
        """What controllers may know about each group (they never see the optimizer)."""
        sched = self.multipliers(step)
        out = []
        for n, g in self.groups.items():
            base = {k: float(g[base_key(k)]) for k in self.available[n]}
            values = {k: _effective_lr(g, sched[n]) if k == "lr" else read_knob(g, k)
                      for k in self.available[n]}
            out.append(GroupView(n, values, base, self.num_params[n], g.get("depth"),
                                 bool(g.get("pretrained", False))))
        return out

    # -- deciding and writing -----------------------------------------------------------------
    def decide(
        self, arbiter: Arbiter, proposals: list[Proposal], step: int, signals: Mapping[str, float]
    ) -> list[Event]:
        """Arbitrate ``proposals``, write the changes, and return one Event per change."""
        if not proposals and not arbiter.pending:
            return []
        self._warn_missing(proposals)
        current = {
            n: {k: (self.multiplier(n) if k == "lr" else read_knob(self.groups[n], k))
                for k in self.available[n]}
            for n in self.names
        }
        scale = {n: self.base(n, "lr") * self.schedule(n, step)
                 for n in self.names if "lr" in self.available[n]}
        events = []
        for ch in arbiter.decide(proposals, current, self._bounds, scale):
            group = self.groups[ch.group]
            reason = ch.reason
            if ch.knob == "lr":
                old = self.lr(ch.group, step)
                group[LR_MULT_KEY] = ch.new
                self._written[ch.group] = new = self.lr(ch.group, step)
                write_knob(group, "lr", new)
                if self.schedule(ch.group, step) == 0.0:  # e.g. a warmup's first step: say
                    base = self.base(ch.group, "lr")     # what the change does to the peak
                    old, new = base * ch.old, base * ch.new
                    reason += " (lr before the schedule; the schedule is at 0 at this step)"
            else:
                old, new = ch.old, ch.new
                write_knob(group, ch.knob, ch.new)
            # a change that answers a detected drift (its reason, or one joined part, says so)
            drift = any(part.startswith("drift:") for part in ch.reason.split("; "))
            events.append(Event(step, ch.group, ch.knob, old, new, ch.source, reason,
                                dict(signals), "drift" if drift else "change"))
        return events

    def _warn_missing(self, proposals: Iterable[Proposal]) -> None:
        for p in proposals:
            if p.group is not None and p.group not in self.groups:
                raise ValueError(
                    f"{p.source or 'a controller'} proposed a change to unknown group "
                    f"{p.group!r}; groups are {self.names}"
                )
            targets = [p.group] if p.group is not None else self.names
            if p.knob not in self.warned and not any(p.knob in self.available[t] for t in targets):
                self.warned.add(p.knob)
                warn_user(
                    f"{type(self.optimizer).__name__} has no {p.knob!r} in its param groups; "
                    f"proposals for it (from {p.source or 'a controller'}) are ignored")

    def write_lr(self, step: int) -> None:
        """Write every group's effective lr for update number ``step``."""
        sched = self.multipliers(step)
        for n, g in self.groups.items():
            if "lr" in self.available[n]:
                self._written[n] = value = _effective_lr(g, sched[n])
                write_knob(g, "lr", value)

    def adopt_outside_changes(self, step: int, signals: Mapping[str, float]) -> list[Event]:
        """An lr set outside the regime since it last wrote one (by hand, by a torch
        scheduler on the same optimizer) becomes the group's new base, so the schedule and
        the controllers carry on from the user's value instead of overwriting it. Warns
        once per group; returns one Event per adoption. Tensor lrs are not checked (that
        would need a host sync)."""
        events = []
        for n, g in self.groups.items():
            written = self._written.get(n)
            if g["lr"] is written:  # the very float object the regime wrote: untouched
                continue
            if written is None or isinstance(g["lr"], torch.Tensor):
                continue
            seen = float(g["lr"])
            if math.isclose(seen, written, rel_tol=1e-9):
                continue
            scale = self.schedule(n, step) * self.multiplier(n)
            if scale <= 0:
                continue  # during a warmup from 0 the user's value cannot set a base
            old = self.base(n, "lr")
            g[base_key("lr")] = seen / scale
            self._bounds = self._controlled_bounds()
            reason = (f"group['lr'] was set to {seen:.4g} outside the regime (it had "
                      f"written {written:.4g}); adopted as the new base lr {old:.4g} -> "
                      f"{self.base(n, 'lr'):.4g}")
            if n not in self._adopted:
                self._adopted.add(n)
                warn_user(f"{reason}. A torch LRScheduler on the same optimizer fights the "
                          "Regime's schedule: give the schedule to the Regime (schedule=...) "
                          "instead")
            events.append(Event(step, n, "lr", written, seen, "outside", reason, dict(signals)))
            self._written[n] = seen
        return events

    # -- clipping -----------------------------------------------------------------------------
    def clip_threshold(self, adaptive: float | None) -> float | None:
        """The tightest of the groups' ``clip_norm`` and the guard's adaptive threshold."""
        thr = [g[CLIP_KEY] for g in self.groups.values() if CLIP_KEY in g]
        if adaptive is not None:
            thr.append(adaptive)
        return min(thr) if thr else None

    @staticmethod
    def clip(grads: list[torch.Tensor], norm: float, threshold: float) -> None:
        """Global-norm clipping with torch's ``clip_grad_norm_`` rule, from the norm
        already on the host (a scalar multiply, no extra sync)."""
        if norm > threshold:
            torch._foreach_mul_(grads, min(threshold / (norm + 1e-6), 1.0))

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "base": {n: {k: self.base(n, k) for k in self.available[n]} for n in self.names},
            "lr_mult": {n: self.multiplier(n) for n in self.names},
            "values": {
                n: {k: read_knob(g, k) for k in self.available[n] if k != "lr"}
                for n, g in self.groups.items()
            },
            "warned": sorted(self.warned),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for n, g in self.groups.items():
            for k, b in state["base"][n].items():
                g[base_key(k)] = float(b)
            for k, v in state["values"][n].items():
                write_knob(g, k, float(v))
            g[LR_MULT_KEY] = float(state["lr_mult"][n])
        self.warned = set(state["warned"])
        self._sched_step = None
        self._bounds = self._controlled_bounds()

    def forget_schedule_cache(self) -> None:
        """Call after the schedules change (a re-plan)."""
        self._sched_step = None


__all__ = [
    "BASE_PREFIX", "CLIP_KEY", "LR_MULT_KEY", "Knobs", "base_key", "has_knob", "read_knob",
    "write_knob",
]
