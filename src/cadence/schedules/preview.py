"""Preview a schedule without an optimizer: values as numbers, or a matplotlib plot."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cadence.schedules._checks import as_int
from cadence.schedules.torch_adapter import ScheduleOrMapping, group_name, resolve


def _steps(steps: int | Iterable[int]) -> list[int]:
    if isinstance(steps, Iterable):
        return [as_int("steps[...]", s, 0) for s in steps]
    return list(range(as_int("steps", steps, 1)))


def preview(
    schedule: ScheduleOrMapping,
    steps: int | Iterable[int],
    groups: list[Mapping[str, Any]] | None = None,
) -> dict[str, list[float]]:
    """Values over ``range(steps)`` (or the given steps).

    Without ``groups``: ``{"multiplier": [...]}``. With param groups (dicts with ``"name"``
    and ``"lr"``, e.g. from ``cadence.param_groups``): ``{name: [absolute lr, ...]}`` per
    group, ``schedule`` being one schedule or a ``{name or pattern: schedule}`` mapping.
    """
    ts = _steps(steps)
    if groups is None:
        if isinstance(schedule, Mapping):
            return {str(k): [s(t) for t in ts] for k, s in schedule.items()}
        return {"multiplier": [schedule(t) for t in ts]}
    groups = list(groups)
    out: dict[str, list[float]] = {}
    for i, (group, sched) in enumerate(zip(groups, resolve(schedule, groups), strict=True)):
        if "lr" not in group:
            raise ValueError(f"param group {group_name(group, i)!r} has no 'lr'")
        lr = float(group["lr"])
        out[group_name(group, i)] = [lr * sched(t) for t in ts]
    return out


def plot(
    schedule: ScheduleOrMapping,
    steps: int | Iterable[int],
    groups: list[Mapping[str, Any]] | None = None,
    path: str | None = None,
) -> Any:
    """Plot :func:`preview`'s curves; save to ``path`` if given. Returns the matplotlib Figure."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "cadence.schedules.plot needs matplotlib: pip install 'cadence[report]'"
        ) from err
    ts = _steps(steps)
    curves = preview(schedule, ts, groups)
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for label, values in curves.items():
        ax.plot(ts, values, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate" if groups is not None else "multiplier of base lr")
    if len(curves) > 1:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
