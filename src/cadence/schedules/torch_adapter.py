"""Hand a schedule to torch as an ``LRScheduler`` (plain loops, Lightning, HF ``Trainer``).

Each group's lr is ``initial_lr * schedule(step)``: a closed form, so ``step(epoch)`` and
resuming are exact, and the state dict stores the schedules as ``to_dict`` data (loadable
with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from cadence.schedules.base import Schedule, from_dict

ScheduleOrMapping = Schedule | Mapping[str, Schedule]


def group_name(group: Mapping[str, Any], index: int) -> str:
    """A group's ``name``, or its index as a string when it has none."""
    return str(group.get("name", index))


def resolve(schedule: ScheduleOrMapping, groups: Sequence[Mapping[str, Any]]) -> list[Schedule]:
    """One schedule per group from a schedule or a ``{name or fnmatch pattern: schedule}``.

    An exact name wins over patterns; otherwise the first matching pattern (in mapping
    order) applies. A group that nothing matches, or a key that matches no group, is an
    error (add a ``"*"`` key for a default).
    """
    if isinstance(schedule, Schedule):
        return [schedule] * len(groups)
    if not isinstance(schedule, Mapping):
        raise TypeError(
            f"schedule must be a Schedule or a mapping of group name to Schedule, "
            f"got {type(schedule).__name__} {schedule!r}"
        )
    for pattern, value in schedule.items():
        if not isinstance(value, Schedule):
            raise TypeError(f"schedule[{pattern!r}] must be a Schedule, got {value!r}")
    names = [group_name(g, i) for i, g in enumerate(groups)]
    used: set[str] = set()
    out: list[Schedule] = []
    for name in names:
        key = name if name in schedule else next(
            (k for k in schedule if fnmatchcase(name, k)), None
        )
        if key is None:
            raise ValueError(
                f"no schedule for param group {name!r}; keys {list(schedule)} match none "
                f"of it (add a '*' key for a default). Groups: {names}"
            )
        used.add(key)
        out.append(schedule[key])
    unused = [k for k in schedule if k not in used and not any(fnmatchcase(n, k) for n in names)]
    if unused:
        raise ValueError(f"schedule keys {unused} match no param group; groups: {names}")
    return out


class ScheduleLR(LRScheduler):
    """A torch ``LRScheduler`` whose lr for group ``i`` is ``base_lrs[i] * schedules[i](step)``.

    Call ``step()`` after ``optimizer.step()``, as with any torch scheduler. Add groups
    to the optimizer before building it.
    """

    def __init__(
        self, optimizer: Optimizer, schedule: ScheduleOrMapping, last_epoch: int = -1
    ) -> None:
        self.schedules = resolve(schedule, optimizer.param_groups)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:  # type: ignore[override]
        """The lr of every group at ``last_epoch`` (a closed form)."""
        if len(self.schedules) != len(self.base_lrs):
            raise RuntimeError(
                f"the optimizer has {len(self.optimizer.param_groups)} param groups but this "
                f"scheduler was built for {len(self.schedules)}; build it after add_param_group"
            )
        step = max(self.last_epoch, 0)
        return [base * s(step) for base, s in zip(self.base_lrs, self.schedules, strict=True)]

    _get_closed_form_lr = get_lr

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer; schedules as ``to_dict`` data."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "schedules")}
        state["schedules"] = [s.to_dict() for s in self.schedules]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore counters, base rates and the saved schedules (the saved curve wins)."""
        state = dict(state_dict)
        schedules = state.pop("schedules", None)
        self.__dict__.update(state)
        if schedules is not None:
            self.schedules = [from_dict(d) for d in schedules]


def to_torch(
    optimizer: Optimizer, schedule: ScheduleOrMapping, last_epoch: int = -1
) -> ScheduleLR:
    """A torch ``LRScheduler`` driving ``optimizer`` with ``schedule`` (or one per group)."""
    if not isinstance(optimizer, Optimizer):
        kind = type(optimizer).__name__
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {kind}")
    return ScheduleLR(optimizer, schedule, last_epoch)
