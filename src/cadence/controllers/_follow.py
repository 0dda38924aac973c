"""Bounded, smoothed target following shared by the adaptive controllers.

A controller decides a *target* (say "this group's lr multiplier should be 0.7") and a
``Follower`` turns it into small multiplicative steps: nothing happens while the target
stays within ``deadband`` of where the controller already is; a move, once started, goes
all the way to the target, at most ``max_step`` per decision; and reversing direction
needs the target to be ``reverse`` times further away than a continuing move does. That
last rule is the hysteresis that keeps a noisy target from producing up/down/up decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cadence.checks import check_float


class Follower:
    """Per-key multiplier that follows a target in bounded, hysteretic steps.

    ``move(key, target)`` returns the factor to apply now (``None`` for no change) and
    records the new multiplier, which stays inside ``bounds``.
    """

    def __init__(
        self,
        bounds: Sequence[float] = (0.1, 10.0),
        max_step: float = 1.05,
        deadband: float = 0.03,
        reverse: float = 3.0,
    ) -> None:
        if len(bounds) != 2:
            raise ValueError(f"bounds must be a pair (low, high), got {bounds!r}")
        self.lo = check_float("bounds[0]", bounds[0], 0.0, low_open=True)
        self.hi = check_float("bounds[1]", bounds[1], self.lo)  # high >= low
        self.max_step = check_float("max_step", max_step, 1.0, low_open=True)
        self.deadband = math.log1p(check_float("deadband", deadband, 0.0, 1.0, high_open=True))
        self.reverse = check_float("reverse", reverse, 1.0)
        self.mult: dict[str, float] = {}
        self.direction: dict[str, int] = {}
        self.moving: dict[str, bool] = {}

    def get(self, key: str) -> float:
        return self.mult.get(key, 1.0)

    def move(self, key: str, target: float) -> float | None:
        target = min(max(float(target), self.lo), self.hi)
        cur = self.get(key)
        gap = math.log(target / cur)
        last = self.direction.get(key, 0)
        moving = self.moving.get(key, False)
        if abs(gap) < 1e-12:
            self.moving[key] = False
            return None
        if moving and gap * last > 0:
            band = 0.0  # a move under way finishes at the target
        else:
            band = self.deadband * (self.reverse if last and gap * last < 0 else 1.0)
        if abs(gap) <= band:
            self.moving[key] = False
            return None
        step = max(-math.log(self.max_step), min(math.log(self.max_step), gap))
        factor = math.exp(step)
        self.mult[key] = cur * factor
        self.direction[key] = 1 if step > 0 else -1
        self.moving[key] = abs(step) < abs(gap)
        return factor

    def state_dict(self) -> dict[str, Any]:
        return {"mult": dict(self.mult), "direction": dict(self.direction),
                "moving": dict(self.moving)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mult = {k: float(v) for k, v in state["mult"].items()}
        self.direction = {k: int(v) for k, v in state["direction"].items()}
        self.moving = {k: bool(v) for k, v in state.get("moving", {}).items()}


def fmt(x: float) -> str:
    """Short human number for reason strings."""
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"
