"""Turning the Regime's arguments into its parts: group names, clipping mode, guard,
controllers and signals (with the signals the controllers require)."""

from __future__ import annotations

import inspect
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from cadence.checks import check_int
from cadence.controllers.scale import ScaleAware
from cadence.protocol import CONTROLLERS, SIGNALS, Context, Controller, Registry, Signal
from cadence.regime import distributed
from cadence.regime.guard import Guard
from cadence.signals.core import CORE_SIGNALS


def group_names(optimizer: torch.optim.Optimizer) -> list[str]:
    """Each group's ``name`` (``group<i>`` when unnamed); names must be unique strings."""
    names: list[str] = []
    for i, g in enumerate(optimizer.param_groups):
        name = g.get("name") or f"group{i}"
        if not isinstance(name, str):
            raise TypeError(f"param group {i} has a non-string name {name!r}")
        if name in names:
            raise ValueError(f"two param groups are named {name!r}; give each a unique 'name'")
        names.append(name)
    return names


def check_seed_scaler_log_dir(seed: Any, scaler: Any, log_dir: Any) -> int | None:
    """The Regime's plain arguments that no part checks: the seed (returned as an int),
    the GradScaler's interface and the run folder's type."""
    if seed is not None:
        seed = check_int("seed", seed, 0)
    if scaler is not None and not all(callable(getattr(scaler, f, None))
                                      for f in ("unscale_", "step", "update")):
        raise TypeError(f"scaler must be a torch.amp.GradScaler (unscale_, step, update) "
                        f"or None, got {type(scaler).__name__} {scaler!r}")
    if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
        raise TypeError(f"log_dir must be a folder path (str or os.PathLike) or None, got "
                        f"{type(log_dir).__name__} {log_dir!r}")
    return seed


#: The Regime form of each drop-in optimizer that adapts its own lr.
_REGIME_FORM = {"ClaraSGD": "torch.optim.SGD(...) with preset='clara'",
                "ClaraAdam": "torch.optim.Adam(...) with preset='clara'",
                "SALeRA": "torch.optim.SGD(...) with controllers=['salera']"}


def refuse_self_adapting(optimizer: torch.optim.Optimizer) -> None:
    """A drop-in optimizer that rewrites its own ``group["lr"]`` every step (``adapts_lr``)
    cannot sit under a Regime: each would overwrite the other's lr (a ClaraSGD's
    adaptation erased every step, or an outside change adopted every step). Refused with
    the Regime form of the same rule."""
    if getattr(type(optimizer), "adapts_lr", False):
        name = type(optimizer).__name__
        form = _REGIME_FORM.get(name, "a plain torch optimizer and the matching controller")
        raise ValueError(
            f"{name} adapts its own learning rate every step, so a Regime and it would fight "
            f"over group['lr']; use {name} on its own, or give the Regime {form}"
        )


def clip_mode(clip_norm: Any) -> float | str | None:
    """A fixed threshold (float), ``"adaptive"`` or ``None``."""
    if clip_norm is None or (isinstance(clip_norm, str) and clip_norm == "adaptive"):
        return clip_norm
    if isinstance(clip_norm, bool) or not isinstance(clip_norm, numbers.Real):
        raise TypeError(f"clip_norm must be a number > 0, 'adaptive' or None, got {clip_norm!r}")
    if not (float(clip_norm) > 0 and math.isfinite(clip_norm)):
        raise ValueError(f"clip_norm must be a finite number > 0, got {clip_norm!r}")
    return float(clip_norm)


def make_guard(guard: Any, clip: float | str | None) -> Guard | None:
    """The Guard for ``guard=`` (True, False/None, a dict of arguments or a Guard);
    adaptive clipping needs one and turns its z-score clipping on (unless the guard has a
    percentile or a z of its own)."""
    if guard is None or guard is False:
        made = None
    elif guard is True:
        made = Guard()
    elif isinstance(guard, Mapping):
        made = _guard_from(guard)
    elif isinstance(guard, Guard):
        made = guard
    else:
        raise TypeError(f"guard must be True, False, None, a dict of Guard arguments or a "
                        f"Guard, got {guard!r}")
    if clip == "adaptive":
        if made is None:
            raise ValueError("clip_norm='adaptive' needs the guard (guard=False was given)")
        if made.clip_percentile is None and made.clip_z is None:
            made.clip_z = 3.0  # z-score clipping of the gradient norm (ZClip)
    return made


def guard_arguments() -> list[str]:
    """The names ``Guard(...)`` accepts (the keys of a ``guard={...}`` dict)."""
    return [p for p in inspect.signature(Guard).parameters if p != "self"]


def _guard_from(args: Mapping[str, Any]) -> Guard:
    allowed = guard_arguments()
    unknown = sorted(str(k) for k in args if k not in allowed)
    if unknown:
        raise TypeError(f"guard has unknown argument(s) {', '.join(map(repr, unknown))}; "
                        f"allowed: {', '.join(allowed)}")
    for key, value in args.items():
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, numbers.Real)):
            raise TypeError(f"guard[{key!r}] must be a number, got {value!r}")
    try:
        return Guard(**args)
    except (TypeError, ValueError) as err:
        raise type(err)(f"guard={dict(args)!r}: {err}") from None


def _listed(what: str, given: Any, kind: str) -> list[Any]:
    """``given`` as a list of parts; a single name or object is refused with a hint."""
    if given is None:
        return []
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
        example = f"[{given!r}]" if isinstance(given, str) else "[...]"
        raise TypeError(f"{what} must be a list of {kind} objects or registered names, got "
                        f"{type(given).__name__} {given!r}; write {what}={example}")
    return list(given)


def _make(what: str, obj: Any, registry: Registry, kind: type) -> Any:
    if isinstance(obj, str):
        try:
            made = registry.create(obj)
        except ValueError as err:
            raise ValueError(f"{what}: {err}") from None
    else:
        made = obj
    if not isinstance(made, kind):
        raise TypeError(
            f"{what}: {made!r} is not a {kind.__name__}: subclass "
            f"cadence.protocol.{kind.__name__} (or give a registered name: "
            f"{', '.join(registry.names())})"
        )
    return made


def controllers(preset: Sequence[Any], user: Any, keep_lr: bool = False
                ) -> tuple[list[Any], list[Any]]:
    """``(the user's controllers, all controllers)``: the preset's first. ``keep_lr``
    leaves out the scale rule (``ScaleAware``), which would replace the user's lr."""
    mine = [_make("controllers", c, CONTROLLERS, Controller)
            for c in _listed("controllers", user, "Controller")]
    every = [_make("preset", c, CONTROLLERS, Controller) for c in preset] + mine
    if keep_lr:
        every = [c for c in every if not isinstance(c, ScaleAware)]
    return mine, every


def signals(
    preset: Sequence[Any], user: Any, ctrls: Sequence[Controller]
) -> tuple[list[Any], list[Any]]:
    """``(the user's signals, all signals)``: the core signals, the preset's and the
    user's (one per name), then the registered signals that controllers ``require`` and
    nobody supplied, built with the controller's ``signal_options``."""
    mine = [_make("signals", s, SIGNALS, Signal) for s in _listed("signals", user, "Signal")]
    given = [SIGNALS.create(n) for n in CORE_SIGNALS]
    given += [_make("preset", s, SIGNALS, Signal) for s in preset] + mine
    out: list[Signal] = []
    for s in given:
        if s.name not in {o.name for o in out}:
            out.append(s)
    for ctrl in ctrls:
        for name in ctrl.requires:
            if name not in {o.name for o in out} and name in SIGNALS:
                out.append(SIGNALS.create(name, **ctrl.signal_options.get(name, {})))
    return mine, out

def context(regime: Any, step: int) -> Context:
    """What the controllers may know of the run at ``step`` (``protocol.Context``)."""
    trials = regime.trials
    return Context(
        step=step,
        total_steps=regime.total_steps,
        groups=regime.knobs.views(step),
        warmup_steps=regime.warmup_steps,
        schedule_multiplier=dict(regime.knobs.multipliers(step)),
        metrics=dict(regime.metrics),
        metrics_step=regime.metrics_step,
        num_params=sum(regime.knobs.num_params.values()),
        is_distributed=distributed.is_distributed(),
        world_size=distributed.world_size(),
        trials=tuple(trials.outcomes) if trials else (),
        trial_open=trials is not None and trials.open is not None,
    )


def metrics_read(controllers: Sequence[Controller]) -> set[str]:
    """The observed metric names some controller reads (``val_loss`` always)."""
    return {"val_loss"} | {str(getattr(c, a)) for c in controllers
                           for a in ("metric", "monitor") if getattr(c, a, None)}


__all__ = [
    "check_seed_scaler_log_dir", "clip_mode", "context", "controllers", "group_names",
    "guard_arguments", "make_guard", "metrics_read", "refuse_self_adapting", "signals",
]
