"""Absolute bounds per knob: user-given ranges, validated, and safe defaults.

For ``lr`` the bounds constrain the *controlled* learning rate ``base × multiplier``
(the schedule's own shape is applied on top and is never clamped, so a cosine may still
reach 0). Other knobs are bounded on their value. Defaults are chosen to hold the group's
base value, so a default bound never moves a value the user set.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from cadence.protocol import KNOBS

#: Default learning-rate range relative to the group's base lr.
LR_RANGE = (1e-6, 10.0)
#: Default absolute ranges of the other knobs (widened to include the base value).
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "momentum": (0.0, 0.999),
    "beta2": (0.5, 0.9999),
    "weight_decay": (0.0, 1.0),
    "clip_norm": (0.0, math.inf),
}
#: Knobs whose value is a decay coefficient: their bounds must lie inside [0, 1).
UNIT_KNOBS: frozenset[str] = frozenset({"momentum", "beta2"})


def validate_bounds(bounds: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """Check a user ``bounds`` mapping ``{knob: (lo, hi)}`` and return it normalised.

    Raises ``TypeError`` for a non-mapping, a non-pair or a pair that is not two numbers
    (numpy scalars are numbers; strings are not), ``ValueError`` for an unknown knob, a
    negative or non-finite ``lo``, a NaN ``hi``, ``lo > hi``, or a ``momentum``/``beta2``
    range reaching 1.
    """
    if bounds is None:
        return {}
    if not isinstance(bounds, Mapping):
        raise TypeError(f"bounds must be a mapping {{knob: (lo, hi)}}, got {type(bounds).__name__}")
    out: dict[str, tuple[float, float]] = {}
    for knob, pair in bounds.items():
        if knob not in KNOBS:
            raise ValueError(f"bounds has unknown knob {knob!r}; knobs are {KNOBS}")
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"bounds[{knob!r}] must be a pair (lo, hi), got {pair!r}")
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in pair):
            hint = (" (a YAML 1.1 reader takes 1e-6 for a string: write 1.0e-6)"
                    if any(isinstance(v, str) for v in pair) else "")
            raise TypeError(f"bounds[{knob!r}] must hold two numbers, got {pair!r}{hint}")
        lo, hi = float(pair[0]), float(pair[1])
        if not math.isfinite(lo) or lo < 0:
            raise ValueError(f"bounds[{knob!r}] lower bound must be finite and >= 0, got {lo}")
        if math.isnan(hi) or hi < lo:
            raise ValueError(f"bounds[{knob!r}] needs lo <= hi, got ({lo}, {hi})")
        if knob in UNIT_KNOBS and hi >= 1:
            raise ValueError(f"bounds[{knob!r}] = {tuple(pair)!r}: a {knob} must stay in "
                             f"[0, 1), so hi must be < 1")
        out[knob] = (lo, hi)
    return out


def check_bases(
    bounds: Mapping[str, tuple[float, float]], bases: Mapping[str, Mapping[str, float]]
) -> None:
    """``ValueError`` when a user bound excludes a group's base value (``{group: {knob:
    base}}``): the bound would never be applied to the value the group starts from."""
    for group, knobs in bases.items():
        for knob, base in knobs.items():
            if knob in bounds and knob != "clip_norm":
                lo, hi = bounds[knob]
                if not lo <= base <= hi:
                    raise ValueError(
                        f"bounds[{knob!r}] = ({lo:g}, {hi:g}) excludes group {group!r}'s "
                        f"{knob} {base:g}; widen the bounds to include it or set the group's "
                        f"{knob} inside them"
                    )


def bounds_for(
    knob: str, base: float, user: Mapping[str, tuple[float, float]]
) -> tuple[float, float]:
    """The (lo, hi) range of ``knob`` for a group whose base value is ``base``.

    For ``lr`` the result bounds ``base × multiplier``; divide by ``base`` to bound the
    multiplier itself.
    """
    if knob in user:
        return user[knob]
    if knob == "lr":
        return (LR_RANGE[0] * base, LR_RANGE[1] * base)
    lo, hi = DEFAULT_BOUNDS[knob]
    return (min(lo, base), max(hi, base))


__all__ = [
    "DEFAULT_BOUNDS", "LR_RANGE", "UNIT_KNOBS", "bounds_for", "check_bases", "validate_bounds",
]
