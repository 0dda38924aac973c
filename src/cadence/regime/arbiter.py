"""The arbiter: turns the controllers' proposals into at most one change per (group, knob).

It works on *controlled* values: the learning-rate multiplier for ``lr`` (which sits on top
of base × schedule) and the value itself for the other knobs. For each (group, knob):

1. the starting point is the pending target (if an earlier change is still being ramped
   in) or the current value; value proposals replace it by their mean;
2. factor proposals multiply it (so several controllers compose as a product);
3. the target is clamped to the absolute bounds and kept as *pending* until reached;
4. the value moves towards the target by at most ``max_change`` per step (× or ÷; for
   ``momentum``/``beta2`` the limit applies to ``1 − β``, the averaging horizon), except
   for ``urgent`` proposals (guards), which jump; ``smoothing`` covers only a fraction of
   the remaining log-distance per step;
5. optionally the learning-rate multipliers of all groups are kept within a ratio
   ``max_lr_spread`` of each other.

A controller's one-off decision (``plateau`` cuts by ×0.1) is thus ramped in over a few
steps instead of being lost to the per-step clamp.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cadence.protocol import Proposal

_BETA_KNOBS = ("momentum", "beta2")


@dataclass
class Change:
    """One decided change in controlled units (lr: the multiplier)."""

    group: str
    knob: str
    old: float
    new: float
    source: str
    reason: str
    urgent: bool = False


@dataclass
class _Pending:
    target: float
    source: str
    reason: str


def _join(items: Iterable[str], sep: str) -> str:
    seen: list[str] = []
    for it in items:
        if it and it not in seen:
            seen.append(it)
    return sep.join(seen)


def _close(a: float, b: float, eps: float) -> bool:
    return abs(a - b) <= eps * max(abs(a), abs(b), 1e-30)


class Arbiter:
    """Composes proposals, clamps the per-step change, enforces bounds, keeps pending targets.

    Args:
        max_change: largest factor a knob may move by in one step (``None``: no limit).
        max_lr_spread: largest ratio between the lr multipliers of any two groups (``None``).
        smoothing: in [0, 1); fraction of the remaining log-distance left for later steps.
        eps: relative change below which nothing is applied (no Event).
    """

    def __init__(
        self,
        max_change: float | None = 1.1,
        max_lr_spread: float | None = None,
        smoothing: float = 0.0,
        eps: float = 1e-9,
    ) -> None:
        if max_change is not None and not (max_change > 1.0 and math.isfinite(max_change)):
            raise ValueError(f"max_change must be a finite number > 1 or None, got {max_change!r}")
        if max_lr_spread is not None and not max_lr_spread >= 1.0:
            raise ValueError(f"max_lr_spread must be >= 1 or None, got {max_lr_spread!r}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.max_change = max_change
        self.max_lr_spread = max_lr_spread
        self.smoothing = smoothing
        self.eps = eps
        self.pending: dict[tuple[str, str], _Pending] = {}

    # -- one (group, knob) ------------------------------------------------------------------
    def _move(self, knob: str, cur: float, target: float) -> float:
        """Step from ``cur`` towards ``target`` under smoothing and the per-step limit."""
        beta = knob in _BETA_KNOBS
        a, b = (1.0 - cur, 1.0 - target) if beta else (cur, target)
        if a <= 0.0 or b <= 0.0:  # no ratio from/to zero: jump (bounds still apply)
            return target
        ratio = b / a
        if self.smoothing:
            ratio = ratio ** (1.0 - self.smoothing)
        if self.max_change is not None:
            ratio = min(max(ratio, 1.0 / self.max_change), self.max_change)
        new = a * ratio
        return 1.0 - new if beta else new

    def decide(
        self,
        proposals: Iterable[Proposal],
        current: Mapping[str, Mapping[str, float]],
        bounds: Mapping[str, Mapping[str, tuple[float, float]]],
        lr_scale: Mapping[str, float] | None = None,
    ) -> list[Change]:
        """Decide this step's changes.

        Args:
            proposals: all proposals of this step (``group=None`` means every group).
            current: ``{group: {knob: controlled value}}`` for the knobs each group has.
            bounds: ``{group: {knob: (lo, hi)}}`` in controlled units.
            lr_scale: ``{group: base × schedule}``, to turn an lr *value* proposal into a
                multiplier target (ignored where the scale is 0).
        """
        lr_scale = lr_scale or {}
        by_key: dict[tuple[str, str], list[Proposal]] = {}
        for p in proposals:
            if p.group is not None and p.group not in current:
                raise ValueError(
                    f"{p.source or 'a controller'} proposed a change to unknown group "
                    f"{p.group!r}; groups are {list(current)}"
                )
            names = [p.group] if p.group is not None else list(current)
            for g in names:
                if p.knob in current[g]:
                    by_key.setdefault((g, p.knob), []).append(p)

        keys = list(by_key) + [k for k in self.pending if k not in by_key]
        out: dict[tuple[str, str], Change] = {}
        for g, knob in keys:
            if knob not in current.get(g, {}):
                self.pending.pop((g, knob), None)
                continue
            cur = current[g][knob]
            props = by_key.get((g, knob), [])
            pend = self.pending.get((g, knob))
            start = pend.target if pend is not None else cur
            values = []
            for p in props:
                if p.value is None:
                    continue
                if knob == "lr":
                    scale = lr_scale.get(g, 0.0)
                    if scale > 0:
                        values.append(p.value / scale)
                else:
                    values.append(p.value)
            if values:
                start = sum(values) / len(values)
            target = start
            for p in props:
                if p.factor is not None:
                    target *= p.factor
            lo, hi = bounds[g][knob]
            target = min(max(target, lo), hi)
            urgent = any(p.urgent for p in props)
            new = target if urgent else self._move(knob, cur, target)
            new = min(max(new, lo), hi)
            if props:
                source = _join((p.source for p in props), "+")
                reason = _join((p.reason for p in props), "; ")
                stored = reason
            else:
                assert pend is not None
                source, stored = pend.source, pend.reason
                reason = stored + " (ramping in)"
            if _close(new, target, self.eps) or urgent:
                self.pending.pop((g, knob), None)
            else:
                self.pending[(g, knob)] = _Pending(target, source, stored)
            if not _close(new, cur, self.eps):
                out[(g, knob)] = Change(g, knob, cur, new, source, reason, urgent)

        if self.max_lr_spread is not None:
            self._limit_spread(out, current)
        return list(out.values())

    def _limit_spread(
        self, out: dict[tuple[str, str], Change], current: Mapping[str, Mapping[str, float]]
    ) -> None:
        assert self.max_lr_spread is not None
        mults = {
            g: (out[(g, "lr")].new if (g, "lr") in out else vals["lr"])
            for g, vals in current.items()
            if "lr" in vals
        }
        pos = [m for m in mults.values() if m > 0]
        if len(pos) < 2 or max(pos) / min(pos) <= self.max_lr_spread * (1 + self.eps):
            return
        centre = math.exp(sum(math.log(m) for m in pos) / len(pos))
        half = math.sqrt(self.max_lr_spread)
        for g, m in mults.items():
            if m <= 0:
                continue
            clamped = min(max(m, centre / half), centre * half)
            if _close(clamped, m, self.eps):
                continue
            reason = f"lr multipliers spread beyond max_lr_spread={self.max_lr_spread:g}"
            if (g, "lr") in out:
                ch = out[(g, "lr")]
                ch.new = clamped
                ch.reason = _join([ch.reason, reason], "; ")
                ch.source = _join([ch.source, "arbiter"], "+")
            else:
                out[(g, "lr")] = Change(g, "lr", current[g]["lr"], clamped, "arbiter", reason)
            self.pending.pop((g, "lr"), None)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "pending": [
                [g, k, p.target, p.source, p.reason] for (g, k), p in sorted(self.pending.items())
            ]
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pending = {
            (g, k): _Pending(float(t), s, r) for g, k, t, s, r in state.get("pending", [])
        }


__all__ = ["Arbiter", "Change"]
