"""Argument checks shared by the schedule kinds; each error names the argument and value."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from typing import Any


def as_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an ``int`` (integral floats accepted), at least ``minimum``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            out = int(value)
        elif isinstance(value, float):
            raise ValueError(f"{name} must be a whole number of steps, got {value!r}") from None
        else:
            raise TypeError(
                f"{name} must be an integer, got {type(value).__name__} {value!r}"
            ) from None
    if minimum is not None and out < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def as_float(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite ``float`` inside the given bounds."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy / torch scalars
        except (TypeError, ValueError):
            kind = type(value).__name__
            raise TypeError(f"{name} must be a number, got {kind} {value!r}") from None
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (out <= low if low_open else out < low):
        op = ">" if low_open else ">="
        raise ValueError(f"{name} must be {op} {low}, got {value!r}")
    if high is not None and (out >= high if high_open else out > high):
        op = "<" if high_open else "<="
        raise ValueError(f"{name} must be {op} {high}, got {value!r}")
    return out


def as_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def as_floor(value: Any, name: str = "floor") -> float:
    """A floor as a fraction of the peak: in ``[0, 1]`` (a floor above the peak is an error)."""
    return as_float(name, value, 0.0, 1.0)
