"""Presets: named starting configurations of a Regime.

A preset is a function ``(total_steps, warmup_steps) -> Plan`` registered in
:data:`PRESETS`; every built-in preset is defined here. The Plan gives the lr schedule,
the controllers and extra signals to run, and options (``warmup_steps``, and defaults
for ``clip_norm``/``guard``/``bounds`` that explicit Regime arguments override; user
bounds override per knob; ``keep_best`` keeps the best-by-validation weights; ``trials``
holds arguments of the Regime's trials part). Other parts add presets by registering a
function::

    @register_preset("clara-sgd")
    def clara_sgd(total_steps, warmup_steps):
        return Plan(schedule=None, controllers=["clara"], signals=[], options={})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from cadence.controllers.clara import ClaraController
from cadence.controllers.drift import DriftResponse
from cadence.controllers.hypergradient import HypergradientController
from cadence.controllers.learned import LearnedLR
from cadence.controllers.lr_trials import LRTrials
from cadence.controllers.plateau import Plateau
from cadence.controllers.scale import ScaleAware
from cadence.controllers.validation import ValidationResponse
from cadence.schedules import Constant, Schedule, warmup, warmup_cosine


class Plan(NamedTuple):
    """What a preset sets up: a schedule (or None), controllers, signals and options."""

    schedule: Any
    controllers: list[Any]
    signals: list[Any]
    options: dict[str, Any]


PresetFn = Callable[[int | None, int | None], Plan]
PRESETS: dict[str, PresetFn] = {}

#: Fraction of ``total_steps`` used for warmup when ``warmup_steps`` is not given.
DEFAULT_WARMUP_FRACTION = 0.05


def register_preset(name: str) -> Callable[[PresetFn], PresetFn]:
    """Decorator: register ``fn`` as preset ``name`` (re-registering replaces it)."""

    def deco(fn: PresetFn) -> PresetFn:
        PRESETS[name] = fn
        return fn

    return deco


def resolve_preset(name: str, total_steps: int | None, warmup_steps: int | None) -> Plan:
    """Build the plan of preset ``name``; unknown names raise ``ValueError`` listing presets."""
    if not isinstance(name, str):
        raise TypeError(f"preset must be a string, got {type(name).__name__}")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets are {sorted(PRESETS)}")
    return PRESETS[name](total_steps, warmup_steps)


# -- schedules used by presets ------------------------------------------------------------------
def warmup_constant_schedule(warmup_steps: int) -> Schedule:
    """Linear warmup from 0 over ``warmup_steps`` then constant 1 (just 1 without warmup)."""
    return warmup(warmup_steps) if warmup_steps else Constant()


def warmup_cosine_schedule(total_steps: int, warmup_steps: int) -> Schedule:
    """Linear warmup from 0 over ``warmup_steps`` then cosine to 0 at ``total_steps``."""
    return warmup_cosine(total_steps=total_steps, warmup_steps=warmup_steps)


def _need_total(name: str, total_steps: int | None) -> int:
    if total_steps is None:
        raise ValueError(
            f"preset {name!r} needs total_steps (its schedule decays over the run); pass "
            "Regime(optimizer, total_steps=N) or use preset='constant' or 'plateau'"
        )
    return total_steps


def default_warmup(total_steps: int, warmup_steps: int | None) -> int:
    """``warmup_steps`` if given, else 5% of ``total_steps``."""
    if warmup_steps is not None:
        return warmup_steps
    return int(round(DEFAULT_WARMUP_FRACTION * total_steps))


#: ``auto``'s shortest warmup, in updates. Adam needs a number of gradients, not a share of
#: the run, before its peak lr is safe (Ma & Yarats 2019 tie the warmup to β2's timescale):
#: on the 400-update charlm a 20-update warmup to the scale rule's lr ends at 2.38, 50 at
#: 2.18, 70 or 100 at 2.12 (3 seeds; the tuned oracle 2.21). Every update of warmup beyond
#: 5 % of the run costs a short convex run instead (logreg from 0.1, 10 seeds: 0.99 of the
#: oracle with 50, 0.88 with 100), so the floor sits where the transformer has most of its
#: gain (docs/auto.md, "Warmup").
AUTO_MIN_WARMUP = 50
#: ... but never more than this share of the run
AUTO_MAX_WARMUP_FRACTION = 0.25


def auto_warmup(total_steps: int, warmup_steps: int | None) -> int:
    """``warmup_steps`` if given, else 5 % of the run, at least ``AUTO_MIN_WARMUP`` updates
    and at most a quarter of the run."""
    if warmup_steps is not None:
        return warmup_steps
    floor = min(AUTO_MIN_WARMUP, int(round(AUTO_MAX_WARMUP_FRACTION * total_steps)))
    return max(default_warmup(total_steps, None), floor)


# -- the presets ---------------------------------------------------------------------------------
@register_preset("constant")
def constant(total_steps: int | None, warmup_steps: int | None) -> Plan:
    """Constant lr (after an optional linear warmup); guards on; no adaptive controller."""
    w = warmup_steps or 0
    return Plan(warmup_constant_schedule(w), [], [], {"warmup_steps": w})


@register_preset("cosine")
def cosine(total_steps: int | None, warmup_steps: int | None) -> Plan:
    """Linear warmup (default 5% of total_steps) then cosine decay to 0; needs total_steps."""
    total = _need_total("cosine", total_steps)
    w = default_warmup(total, warmup_steps)
    return Plan(warmup_cosine_schedule(total, w), [], [], {"warmup_steps": w})


@register_preset("plateau")
def plateau(total_steps: int | None, warmup_steps: int | None) -> Plan:
    """Constant lr (optional warmup) cut ×0.5 when the short loss EMA stops improving.

    The loss EMA is checked every ``total_steps // 100`` steps (every 50 without a
    horizon); 5 checks without a 1 % improvement trigger a cut, with hysteresis and a
    2-check cooldown.
    """
    w = warmup_steps or 0
    every = max(1, total_steps // 100) if total_steps else 50
    ctrl = Plateau(
        monitor="loss_ema_short",
        factor=0.5,
        patience=5,
        threshold=1e-2,
        cooldown=2,
        check_every=every,
        hysteresis=2.0,
    )
    return Plan(warmup_constant_schedule(w), [ctrl], [], {"warmup_steps": w})


def _adapted_constant(controller: Any, warmup_steps: int | None) -> Plan:
    """Constant lr (after an optional warmup) that one per-step controller adapts."""
    w = warmup_steps or 0
    return Plan(warmup_constant_schedule(w), [controller], [], {"warmup_steps": w})


@register_preset("clara")
def clara(total_steps: int | None, warmup_steps: int | None) -> Plan:
    """Constant lr (optional warmup) adapted every step by CLARA from the path length of
    the optimizer's own updates (see ``cadence.controllers.clara``); no horizon needed."""
    return _adapted_constant(ClaraController(), warmup_steps)


@register_preset("hypergradient")
def hypergradient(total_steps: int | None, warmup_steps: int | None) -> Plan:
    """Constant lr (optional warmup) adapted every step by the multiplicative hypergradient
    rule (SGD-HD / Adam-HD, see ``cadence.controllers.hypergradient``)."""
    return _adapted_constant(HypergradientController(), warmup_steps)


#: Absolute lr range of ``auto``. The Regime's default range is relative to the user's lr
#: (×1e-6 … ×10), which would stop a 1e-5 start from reaching the scale-aware lr; ``auto``
#: exists to make that start irrelevant, so its range is absolute and wide.
AUTO_LR_BOUNDS = (1e-7, 10.0)


@register_preset("auto")
def auto(total_steps: int | None, warmup_steps: int | None) -> Plan:
    """The zero-tuning default: a scale prior corrected by trials, warmup + cosine, a
    validation response, the guard and a drift response.

    1. ``scale`` replaces an implausible initial lr (more than 3× off) by the scale-aware
       default at step 0, one factor for every group, with a warning (``keep_lr=True``
       keeps yours; a pretrained group is never raised);
    2. ``lr_trials`` corrects that first guess: tentative ×2 / ×½ moves in the first half
       of the run, each kept or reverted on the loss evidence (``cadence.regime.trials``);
    3. a linear warmup (5 % of the run, at least 50 updates, at most a quarter of the run:
       ``auto_warmup``) and a cosine decay to 0 from what was found
       (without ``total_steps``: warmup, then constant with ``plateau`` cuts);
    4. ``validation``: with ``observe(val_loss=...)``, overfitting cuts the lr (and a
       growing gap raises weight decay); the best-by-validation weights are kept
       (``regime.best_state()`` / ``regime.restore_best()``);
    5. the Regime's guard; 6. ``drift_response``, a staged re-warm after a distribution
       shift. The lr is bounded absolutely by ``AUTO_LR_BOUNDS``. Measured numbers are in
       docs/auto.md.
    """
    controllers: list[Any] = [ScaleAware(optimizer_kind="infer"), LRTrials(),
                              ValidationResponse(), DriftResponse()]
    if total_steps:
        w = auto_warmup(total_steps, warmup_steps)
        schedule = warmup_cosine_schedule(total_steps, w)
    else:
        w = warmup_steps or 0
        schedule = warmup_constant_schedule(w)
        controllers += plateau(None, warmup_steps).controllers
    return Plan(schedule, controllers, ["drift"],
                {"warmup_steps": w, "bounds": {"lr": AUTO_LR_BOUNDS}, "keep_best": True,
                 "clip_norm": "adaptive"})  # z-score clipping: no spike reaches the weights


@register_preset("learned")
def learned(total_steps: int | None, warmup_steps: int | None) -> Plan:
    """``auto``'s scale-aware start and cosine (with the 5 % warmup the policy was trained
    under, not ``auto``'s 50-update floor), with the lr multiplied on top by a
    policy trained with PPO (``cadence.controllers.learned``; 20 decisions per run, each
    one of ×0.5 … ×2, "keep" follows the cosine). Needs total_steps. The policy ships with
    cadence and runs with torch alone; docs/learned.md has its training and transfer table.
    """
    total = _need_total("learned", total_steps)
    w = default_warmup(total, warmup_steps)
    return Plan(warmup_cosine_schedule(total, w),
                [ScaleAware(optimizer_kind="infer"), LearnedLR()], [],
                {"warmup_steps": w, "bounds": {"lr": AUTO_LR_BOUNDS}})


__all__ = [
    "DEFAULT_WARMUP_FRACTION",
    "PRESETS",
    "AUTO_LR_BOUNDS",
    "Plan",
    "auto_warmup",
    "default_warmup",
    "register_preset",
    "resolve_preset",
    "warmup_constant_schedule",
    "warmup_cosine_schedule",
]
