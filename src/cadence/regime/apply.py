"""Reading and writing knobs in torch param groups, for any optimizer.

The mapping from cadence's knob names to a param group's keys:

========== ==================================================================
knob       where it lives
========== ==================================================================
lr         ``group["lr"]`` (a float, or a tensor written in place with ``fill_``)
momentum   ``group["momentum"]`` (SGD, RMSprop) or ``group["betas"][0]`` (Adam family)
beta2      ``group["betas"][1]``
weight_decay ``group["weight_decay"]``
clip_norm  ``group["cadence_clip_norm"]`` (the Regime's global clipping threshold)
========== ==================================================================

A knob whose key is absent is "not available" for that group; the Regime skips it with one
warning. This module is the only place that knows these keys.
"""

from __future__ import annotations

from typing import Any

import torch

BASE_PREFIX = "cadence_base_"
LR_MULT_KEY = "cadence_lr_mult"
CLIP_KEY = "cadence_clip_norm"


def has_knob(group: dict[str, Any], knob: str) -> bool:
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


def _has_beta(group: dict[str, Any], i: int) -> bool:
    betas = group.get("betas")
    return isinstance(betas, (tuple, list)) and len(betas) > i


def _as_float(v: Any) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


def read_knob(group: dict[str, Any], knob: str) -> float:
    """Current value of ``knob`` in ``group`` as a Python float."""
    if knob == "lr":
        return _as_float(group["lr"])
    if knob == "momentum":
        if "momentum" in group:
            return _as_float(group["momentum"])
        return _as_float(group["betas"][0])
    if knob == "beta2":
        return _as_float(group["betas"][1])
    if knob == "weight_decay":
        return _as_float(group["weight_decay"])
    if knob == "clip_norm":
        return _as_float(group[CLIP_KEY])
    raise ValueError(f"unknown knob {knob!r}")


def _set(container: dict[str, Any], key: str, value: float) -> None:
    cur = container[key]
    if isinstance(cur, torch.Tensor):
        cur.fill_(value)  # capturable / tensor lr: keep the same tensor object
    else:
        container[key] = value


def _set_beta(group: dict[str, Any], i: int, value: float) -> None:
    betas = group["betas"]
    if isinstance(betas[i], torch.Tensor):
        betas[i].fill_(value)
        return
    new = list(betas)
    new[i] = value
    group["betas"] = tuple(new) if isinstance(betas, tuple) else new


def write_knob(group: dict[str, Any], knob: str, value: float) -> None:
    """Write ``value`` for ``knob`` into ``group`` (tensors are updated in place)."""
    value = float(value)
    if knob == "lr":
        _set(group, "lr", value)
    elif knob == "momentum":
        if "momentum" in group:
            _set(group, "momentum", value)
        else:
            _set_beta(group, 0, value)
    elif knob == "beta2":
        _set_beta(group, 1, value)
    elif knob == "weight_decay":
        _set(group, "weight_decay", value)
    elif knob == "clip_norm":
        group[CLIP_KEY] = value
    else:
        raise ValueError(f"unknown knob {knob!r}")


def base_key(knob: str) -> str:
    """Key under which a group's base value of ``knob`` is stored (``cadence_base_lr``...)."""
    return BASE_PREFIX + knob


def ensure_base(group: dict[str, Any], knob: str) -> float:
    """Store the group's current value as its base once, and return the base.

    A base already present (e.g. restored by ``optimizer.load_state_dict``) is kept, so the
    base is written exactly once over the life of a run.
    """
    key = base_key(knob)
    if key not in group:
        group[key] = read_knob(group, knob)
    return float(group[key])


__all__ = [
    "BASE_PREFIX",
    "CLIP_KEY",
    "LR_MULT_KEY",
    "base_key",
    "ensure_base",
    "has_knob",
    "read_knob",
    "write_knob",
]
