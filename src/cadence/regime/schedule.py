"""Per-group learning-rate schedules as a built-in multiplier, and explicit re-planning.

The Regime multiplies each group's base lr by ``schedule(step)``; the schedule is a pure
function of the real-update count, so the value at any step is known without replay and
resume is exact. ``Regime(schedule=...)`` accepts one schedule for every group or a mapping
from group name (or ``fnmatch`` pattern) to schedule that covers every group (add ``"*"``
for the rest), as ``cadence.schedules.to_torch`` asks too.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

ScheduleFn = Callable[[int], float]


def schedule_to_dict(schedule: Any) -> dict[str, Any]:
    """JSON description of a schedule (``to_dict()`` when it has one, else its repr)."""
    if schedule is None:
        return {"kind": "constant", "value": 1.0}
    to_dict = getattr(schedule, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    return {"kind": "callable", "repr": repr(schedule)}


class Replanned:
    """A schedule whose part from step ``origin`` on is replayed from step ``at`` to a new
    horizon.

    For ``step < at`` it equals ``base``; after, the part of ``base`` between ``origin`` and
    ``old_total`` is mapped linearly onto ``at … new_total``. A re-plan keeps
    ``origin = at`` (the default): the curve is continuous at ``at`` and reaches
    ``base(old_total)`` at ``new_total``. A restart uses ``origin = 0``: the whole schedule
    (warmup included) runs again, compressed into the steps that are left. This works for
    any schedule, closed-form or not, and composes when re-planned again.
    """

    def __init__(self, base: ScheduleFn, at: int, old_total: int, new_total: int,
                 origin: int | None = None) -> None:
        if new_total <= at:
            raise ValueError(
                f"new total_steps={new_total} must be greater than the current step {at}"
            )
        self.origin = at if origin is None else origin
        if not 0 <= self.origin <= at:
            raise ValueError(f"origin={self.origin} must lie in [0, at={at}]")
        self.base, self.at, self.old_total, self.new_total = base, at, old_total, new_total
        self._ratio = max(old_total - self.origin, 0) / (new_total - at)

    def __call__(self, step: int) -> float:
        if step < self.at:
            return float(self.base(step))
        return float(self.base(self.origin + round((step - self.at) * self._ratio)))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "kind": "replanned",
            "base": schedule_to_dict(self.base),
            "at": self.at,
            "old_total": self.old_total,
            "new_total": self.new_total,
        }
        if self.origin != self.at:
            out["origin"] = self.origin
        return out


class GroupSchedules:
    """Resolves ``schedule`` (one, or a name/pattern mapping) to a schedule per group.

    Exact group names win over patterns; patterns are tried in the mapping's order. A key
    that matches no group, or a group that no key matches, raises ``ValueError`` (a typo
    would otherwise leave that group on a constant lr); ``"*"`` covers the rest.
    """

    def __init__(self, schedule: Any, group_names: list[str]) -> None:
        self.spec = schedule
        self.by_group: dict[str, ScheduleFn | None] = {}
        if schedule is None or callable(schedule):
            self.by_group = {g: schedule for g in group_names}
            return
        if not isinstance(schedule, Mapping):
            raise TypeError(
                "schedule must be a callable step -> multiplier or a mapping "
                f"{{group name or pattern: schedule}}, got {type(schedule).__name__}"
            )
        for key, sch in schedule.items():
            if not isinstance(key, str):
                raise TypeError(f"schedule mapping keys must be group names, got {key!r}")
            if not callable(sch):
                raise TypeError(f"schedule[{key!r}] must be callable, got {type(sch).__name__}")
            is_pattern = any(c in key for c in "*?[")
            if not is_pattern and key not in group_names:
                raise ValueError(
                    f"schedule names group {key!r}, which does not exist; groups are {group_names}"
                )
            if is_pattern and not fnmatch.filter(group_names, key):
                raise ValueError(f"schedule pattern {key!r} matches no group; groups are "
                                 f"{group_names}")
        missing = []
        for g in group_names:
            if g in schedule:
                self.by_group[g] = schedule[g]
                continue
            match = next((s for k, s in schedule.items() if fnmatch.fnmatchcase(g, k)), None)
            if match is None:
                missing.append(g)
            self.by_group[g] = match
        if missing:
            raise ValueError(
                f"schedule keys {list(schedule)} give no schedule to group(s) {missing}; add "
                "'*': a schedule for the rest (cadence.schedules.constant() keeps them constant)"
            )

    def __call__(self, group: str, step: int) -> float:
        sch = self.by_group[group]
        return 1.0 if sch is None else float(sch(step))

    def at(self, step: int) -> dict[str, float]:
        """Every group's multiplier at ``step``; a schedule shared by groups runs once."""
        seen: dict[int, float] = {}
        out = {}
        for g, sch in self.by_group.items():
            if sch is None:
                out[g] = 1.0
                continue
            v = seen.get(id(sch))
            if v is None:
                v = seen[id(sch)] = float(sch(step))
            out[g] = v
        return out

    def replan(self, at: int, old_total: int, new_total: int, origin: int | None = None) -> None:
        """Stretch every group's remaining schedule from ``at`` to ``new_total`` (from
        ``origin = 0``: replay it from its start, see :class:`Replanned`)."""
        wrapped: dict[int, Replanned] = {}  # a schedule shared by groups stays shared
        for g, sch in self.by_group.items():
            if sch is not None:
                if id(sch) not in wrapped:
                    wrapped[id(sch)] = Replanned(sch, at, old_total, new_total, origin)
                self.by_group[g] = wrapped[id(sch)]

    def to_dict(self) -> dict[str, Any]:
        """One schedule's dict when all groups share it, else ``{group: dict}``."""
        scheds = list(self.by_group.values())
        if scheds and all(s is scheds[0] for s in scheds):
            return schedule_to_dict(scheds[0])
        return {g: schedule_to_dict(s) for g, s in self.by_group.items()}


__all__ = ["GroupSchedules", "Replanned", "schedule_to_dict"]
