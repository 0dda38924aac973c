"""Argument validators shared by signals, controllers and optimizers.

Each returns the checked value (as ``int`` or ``float``) and raises ``ValueError`` with a
message that names the argument, the allowed range and the value given. A leaf module:
it imports nothing of cadence's.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["check_beta", "check_float", "check_int", "warn_user"]

_PACKAGE = str(Path(__file__).resolve().parent)


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside cadence, so the warning
    names the user's line however deep in the regime it was raised."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is warn_user's caller
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(
            _PACKAGE):
        level, frame = level + 1, frame.f_back  # type: ignore[assignment]
    warnings.warn(message, category, stacklevel=level)


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum`` (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def check_float(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite ``float`` within ``[low, high]`` (either end open on request,
    either bound optional). ``check_float("max_step", x, 1, low_open=True)`` asks x > 1."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        x = float(value)
        ok = math.isfinite(x)
        if ok and low is not None:
            ok = x > low if low_open else x >= low
        if ok and high is not None:
            ok = x < high if high_open else x <= high
    if not ok:
        where = _interval(low, high, low_open, high_open)
        raise ValueError(f"{name} must be a finite number{' ' + where if where else ''}, "
                         f"got {value!r}")
    return float(value)


def check_beta(name: str, value: Any) -> float:
    """A decay or momentum coefficient: a number in ``[0, 1)``."""
    return check_float(name, value, 0.0, 1.0, high_open=True)
