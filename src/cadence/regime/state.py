"""A Regime's state dict: everything needed to continue a run exactly, as plain data.

The state holds only Python numbers, strings, lists, dicts and one RNG tensor, so
``torch.load(..., weights_only=True)`` reads it. A fingerprint of the configuration
(preset, parts, groups, knobs) is checked on load: a state from another setup is refused
with the differences named, instead of half-loading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cadence.regime.presets import resolve_preset
from cadence.regime.schedule import GroupSchedules

STATE_VERSION = 1


def part_keys(parts: Iterable[Any]) -> list[str]:
    """One state key per part: its name, with ``#2``, ``#3`` … for repeated names."""
    keys: list[str] = []
    for p in parts:
        k, i = p.name, 2
        while k in keys:
            k, i = f"{p.name}#{i}", i + 1
        keys.append(k)
    return keys


def fingerprint(regime: Any) -> dict[str, Any]:
    return {
        "preset": regime.preset,
        "controllers": part_keys(regime.controllers),
        "signals": part_keys(regime.signal_objs),
        "groups": list(regime.group_names),
        "knobs": {n: list(k) for n, k in regime.knobs.available.items()},
        "guard": regime.guard is not None,
        "optimizer": type(regime.optimizer).__name__,
    }


#: Fingerprint keys newer than STATE_VERSION 1's first states: absent means "not recorded".
_LATER_KEYS = frozenset({"optimizer"})


def regime_state(regime: Any) -> dict[str, Any]:
    """The state dict of ``regime`` (see ``Regime.state_dict``)."""
    return {
        "version": STATE_VERSION,
        "fingerprint": fingerprint(regime),
        "step_count": regime.step_count,
        "total_steps": regime.total_steps,
        "plan_total": regime._plan_total,
        "replans": [list(r) for r in regime._replans],
        "warmup_steps": regime.warmup_steps,
        "knobs": regime.knobs.state_dict(),
        "arbiter": regime.arbiter.state_dict(),
        "controllers": {k: c.state_dict()
                        for k, c in zip(part_keys(regime.controllers), regime.controllers,
                                        strict=True)},
        "signals": {k: s.state_dict()
                    for k, s in zip(part_keys(regime.signal_objs), regime.signal_objs,
                                    strict=True)},
        "guard": regime.guard.state_dict() if regime.guard is not None else None,
        "trials": regime.trials.state_dict() if regime.trials is not None else None,
        "last_signals": dict(regime.signals),
        "metrics": dict(regime.metrics),
        "metrics_step": regime.metrics_step,
        "event_count": regime._event_offset + len(regime.events),
        "snapshot": {"step": regime.snapshot.step, "path": regime.snapshot.path},
        "best": regime.best.state_dict() if regime.best is not None else None,
        "rng": regime.generator.get_state(),
    }


def load_regime_state(regime: Any, state: Mapping[str, Any]) -> None:
    """Restore ``state`` into ``regime`` (see ``Regime.load_state_dict``)."""
    if not isinstance(state, Mapping) or "fingerprint" not in state:
        raise ValueError("not a Regime state dict (no 'fingerprint'); pass regime.state_dict()")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"Regime state version {state.get('version')} is not supported")
    mine, theirs = fingerprint(regime), state["fingerprint"]
    if not isinstance(theirs, Mapping):
        raise ValueError(f"not a Regime state dict: 'fingerprint' is {theirs!r}")
    diffs = [f"{k}: saved {theirs.get(k)!r}, here {v!r}" for k, v in mine.items()
             if theirs.get(k, v if k in _LATER_KEYS else None) != v]
    if diffs:
        raise ValueError(
            "Regime state dict comes from a different configuration; build the Regime with "
            "the same optimizer class, preset, controllers, signals, guard and param groups. "
            "Differences: " + "; ".join(diffs)
        )
    wanted_total = regime.total_steps
    done = state.get("step_count")
    if (isinstance(done, int) and wanted_total is not None and wanted_total <= done
            and wanted_total != state.get("total_steps")):
        raise ValueError(
            f"total_steps={wanted_total} of this Regime is not beyond the {done} steps the "
            f"saved run already did; build it with total_steps > {done} (or None to keep the "
            f"saved {state.get('total_steps')})"
        )
    regime.step_count = int(state["step_count"])
    regime.warmup_steps = int(state["warmup_steps"])
    # rebuild the schedule as the saved run had it, then replay its re-plans
    regime._plan_total = state["plan_total"]
    spec = regime._user_schedule
    if spec is None:
        spec = resolve_preset(regime.preset, regime._plan_total, regime.warmup_steps).schedule
    regime.schedules = regime.knobs.schedules = GroupSchedules(spec, regime.group_names)
    regime._replans = [list(r) for r in state["replans"]]
    for at, old, new, *origin in regime._replans:  # [at, old, new] or, a restart, + [0]
        regime.schedules.replan(at, old, new, *origin)
    regime._total_steps = state["total_steps"]
    regime.knobs.load_state_dict(state["knobs"])
    regime.arbiter.load_state_dict(state["arbiter"])
    for k, c in zip(part_keys(regime.controllers), regime.controllers, strict=True):
        c.load_state_dict(state["controllers"][k])
    for k, s in zip(part_keys(regime.signal_objs), regime.signal_objs, strict=True):
        s.load_state_dict(state["signals"][k])
    if regime.guard is not None:
        regime.guard.load_state_dict(state["guard"])
    if regime.trials is not None:
        regime.trials.load_state_dict(state["trials"])
        regime.trials.total_steps = state["total_steps"]
    regime.signals = dict(state["last_signals"])
    regime.metrics = dict(state["metrics"])
    regime.metrics_step = state["metrics_step"]
    regime._event_offset = int(state["event_count"]) - len(regime.events)
    regime.snapshot.path = state["snapshot"]["path"]
    if regime.best is not None:
        regime.best.load_state_dict(state.get("best"))
    regime.generator.set_state(state["rng"])
    regime.measure.reset()
    regime.knobs.write_lr(regime.step_count)
    if wanted_total is not None and wanted_total != regime.total_steps:
        regime.replan(wanted_total)


__all__ = ["STATE_VERSION", "fingerprint", "load_regime_state", "part_keys", "regime_state"]
