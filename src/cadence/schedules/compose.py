"""Composition: pieces in sequence (each sees its local step) and products."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from cadence.schedules._checks import as_int
from cadence.schedules.base import Schedule, _set


def _check_schedule(name: str, value: Any) -> Schedule:
    if not isinstance(value, Schedule):
        raise TypeError(f"{name} must be a Schedule, got {type(value).__name__} {value!r}")
    return value


@dataclass(frozen=True)
class Sequential(Schedule):
    """Pieces ``(schedule, duration)`` one after another, like torch's ``SequentialLR``
    and optax's ``join_schedules``.

    Piece ``k`` starts at its own step 0 exactly at its boundary (the sum of the earlier
    durations). The last piece runs on past its duration, which may be ``None``.
    """

    pieces: tuple[tuple[Schedule, int | None], ...]

    kind = "sequence"

    def __post_init__(self) -> None:
        if isinstance(self.pieces, (str, bytes)) or not isinstance(self.pieces, Iterable):
            raise TypeError(
                f"pieces must be a sequence of (schedule, duration), got {self.pieces!r}"
            )
        pieces = tuple(self.pieces)
        if not pieces:
            raise ValueError("pieces must not be empty, got ()")
        checked = []
        for k, piece in enumerate(pieces):
            if isinstance(piece, Schedule) and k == len(pieces) - 1:
                piece = (piece, None)
            if not isinstance(piece, (tuple, list)) or len(piece) != 2:
                raise TypeError(f"pieces[{k}] must be a (schedule, duration) pair, got {piece!r}")
            schedule, duration = piece
            _check_schedule(f"pieces[{k}][0]", schedule)
            if duration is None and k < len(pieces) - 1:
                raise ValueError(f"only the last piece may be open-ended; pieces[{k}] has "
                                 "duration None")
            if duration is not None:
                duration = as_int(f"pieces[{k}] duration", duration, 1)
            checked.append((schedule, duration))
        _set(self, "pieces", tuple(checked))
        starts = [0]
        for _, duration in checked[:-1]:
            starts.append(starts[-1] + cast(int, duration))  # only the last may be None
        _set(self, "_starts", tuple(starts))

    @property
    def boundaries(self) -> tuple[int, ...]:
        """The global steps at which pieces 1, 2, ... start."""
        return self._starts[1:]  # type: ignore[attr-defined]

    def at(self, step: int) -> float:
        starts = self._starts  # type: ignore[attr-defined]
        k = bisect_right(starts, step) - 1
        return self.pieces[k][0].at(step - starts[k])


def sequence(pieces: Iterable[tuple[Schedule, int | None] | Schedule]) -> Sequential:
    """Run ``(schedule, duration)`` pieces in order; the last may be a bare schedule."""
    return Sequential(tuple(pieces))  # type: ignore[arg-type]


def join(schedules: Iterable[Schedule], boundaries: Iterable[int]) -> Sequential:
    """optax-style ``join_schedules`` / torch ``SequentialLR(milestones=...)``: schedule ``k``
    starts (at its step 0) at global step ``boundaries[k-1]``."""
    scheds = list(schedules)
    bounds = [as_int(f"boundaries[{i}]", b, 1) for i, b in enumerate(boundaries)]
    if len(bounds) != len(scheds) - 1:
        raise ValueError(
            f"boundaries must have one entry fewer than schedules ({len(scheds)}), "
            f"got {len(bounds)}: {bounds}"
        )
    if any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)):
        raise ValueError(f"boundaries must be strictly increasing, got {bounds}")
    edges = [0, *bounds]
    durations: list[int | None] = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    return Sequential(tuple(zip(scheds, [*durations, None], strict=True)))


@dataclass(frozen=True)
class Product(Schedule):
    """The pointwise product of schedules (e.g. a decay times a periodic factor)."""

    factors: tuple[Schedule, ...]

    kind = "product"

    def __post_init__(self) -> None:
        factors = tuple(self.factors)
        if not factors:
            raise ValueError("factors must not be empty, got ()")
        for k, f in enumerate(factors):
            _check_schedule(f"factors[{k}]", f)
        _set(self, "factors", factors)

    def at(self, step: int) -> float:
        out = 1.0
        for f in self.factors:
            out *= f.at(step)
        return out


def product(*schedules: Schedule) -> Product:
    """``product(a, b, ...)(t) == a(t) * b(t) * ...``."""
    return Product(schedules)
