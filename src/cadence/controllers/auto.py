"""The ``auto`` preset (first draft): scale-aware start + warmup + cosine + guards + correctors.

The promise of ``auto`` is that the initial lr the user happened to give (anything from
1e-5 to 1 for Adam) does not matter. The main lever is therefore the *starting point*:

1. ``scale`` replaces an implausible initial lr (more than 3× off) by the scale-aware
   default at step 0 (``cadence.controllers.scale``);
2. a linear warmup (5 % of the run) and a cosine decay to 0 — the oracle's own schedule
   shape — so the only difference from a tuned run is where the peak lr comes from;
3. the Regime's guard (skip / roll back / cool down on non-finite or spiking steps);
4. a bounded corrector on top: ``drift_response`` (staged re-warm after a distribution
   shift; silent otherwise). ``noise_lr``, ``layerwise`` and ``clara`` are opt-in
   (``auto_preset(..., noise=True, layerwise=True, clara=True)``): on the digits sanity run
   ``noise_lr`` cost 1 point of accuracy (the noise scale grows as the loss falls, so it
   cuts the lr late in training, on top of the cosine).

The lr is bounded absolutely by ``AUTO_LR_BOUNDS`` (the Regime's default is relative to
the user's lr, which would pin a 1e-5 start near 1e-5). Measured numbers are in
``docs/auto.md``.

``auto_plan`` is the preset function registered as ``"auto"`` (it replaces the Regime's
placeholder when this module is imported); ``auto_preset`` describes the same composition
with the scale-aware numbers filled in, for a known model size and optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cadence.controllers.drift import DriftResponse
from cadence.controllers.scale import ScaleAware, ScaleDefaults, scale_defaults
from cadence.protocol import CONTROLLERS

__all__ = ["AutoPlan", "auto_plan", "auto_preset"]

WARMUP_FRACTION = 0.05
#: Absolute lr range of ``auto``. The Regime's default range is relative to the user's lr
#: (×1e-6 … ×10), which would stop a 1e-5 start from reaching the scale-aware lr; ``auto``
#: exists to make that start irrelevant, so its range is absolute and wide.
AUTO_LR_BOUNDS = (1e-7, 10.0)


@dataclass
class AutoPlan:
    """What ``auto`` runs for one model: schedule spec, controllers, signals, defaults."""

    schedule: dict[str, Any]
    controllers: list[tuple[str, dict[str, Any]]]
    signals: list[str]
    defaults: ScaleDefaults
    options: dict[str, Any] = field(default_factory=dict)


def _warmup(total_steps: int | None, warmup_steps: int | None) -> int:
    if warmup_steps is not None:
        return int(warmup_steps)
    return int(round(WARMUP_FRACTION * total_steps)) if total_steps else 0


def auto_preset(
    total_steps: int | None,
    num_params: int,
    optimizer_kind: str = "adamw",
    *,
    fan_in: float | None = None,
    warmup_steps: int | None = None,
    noise: bool = False,
    layerwise: bool = False,
    clara: bool = False,
) -> AutoPlan:
    """The ``auto`` composition for a model of ``num_params`` trained by ``optimizer_kind``.

    Controllers are given as ``(registry name, kwargs)`` so a configuration file or the
    presets registry can build them; ``clara`` is included only if registered.
    """
    if total_steps is not None and (not isinstance(total_steps, int) or total_steps < 1):
        raise ValueError(f"total_steps must be a positive int or None, got {total_steps!r}")
    defaults = scale_defaults(num_params, optimizer_kind, fan_in=fan_in,
                              total_steps=total_steps)
    w = _warmup(total_steps, warmup_steps)
    if total_steps:
        schedule = {"kind": "warmup_cosine", "total_steps": total_steps, "warmup_steps": w}
    else:
        schedule = {"kind": "warmup_constant", "warmup_steps": w}
    controllers: list[tuple[str, dict[str, Any]]] = [
        ("scale", {"optimizer_kind": optimizer_kind, "fan_in": fan_in}),
        ("drift_response", {}),
    ]
    signals = ["drift"]
    if noise:
        controllers.append(("noise_lr", {}))
        signals.append("grad_noise")
    if not total_steps:
        controllers.append(("plateau", {}))
    if layerwise:
        controllers.append(("layerwise", {"mode": "trust"}))
        signals.append("update_ratio")
    if clara and "clara" in CONTROLLERS:
        controllers.append(("clara", {}))
    return AutoPlan(schedule=schedule, controllers=controllers, signals=signals,
                    defaults=defaults,
                    options={"warmup_steps": w, "bounds": {"lr": AUTO_LR_BOUNDS}})


def auto_plan(total_steps: int | None, warmup_steps: int | None) -> Any:
    """Preset function for the Regime's registry: ``(total_steps, warmup_steps) -> Plan``.

    The optimizer is not known here, so ``scale`` infers the family from the knobs the
    groups have (``beta2`` → Adam) and the size from ``Context.num_params`` at step 0.
    """
    from cadence.regime.presets import (
        Plan,
        plateau,
        warmup_constant_schedule,
        warmup_cosine_schedule,
    )

    w = _warmup(total_steps, warmup_steps)
    ctrls: list[Any] = [ScaleAware(optimizer_kind="infer"), DriftResponse()]
    if total_steps:
        schedule = warmup_cosine_schedule(total_steps, w)
    else:
        schedule = warmup_constant_schedule(w)
        ctrls += plateau(None, warmup_steps).controllers
    return Plan(schedule, ctrls, ["drift"], {"warmup_steps": w, "bounds": {"lr": AUTO_LR_BOUNDS}})


def register() -> None:
    """Register ``auto_plan`` as the Regime's ``"auto"`` preset."""
    from cadence.regime.presets import register_preset

    register_preset("auto")(auto_plan)


register()
