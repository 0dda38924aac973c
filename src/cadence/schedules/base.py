"""The :class:`Schedule` base class, the registry of kinds and ``to_dict``/``from_dict``.

A schedule is a frozen dataclass: a pure function of the optimizer step that returns a
*multiplier* of a parameter group's base learning rate (the peak is 1.0 by convention).
Being a dataclass gives value equality, hashing, a readable ``repr`` and pickling for
free; the fields are exactly what ``to_dict`` writes, so a configuration file or a run
record can rebuild the same curve.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

_KINDS: dict[str, type[Schedule]] = {}


def _set(obj: Any, name: str, value: Any) -> None:
    """Set a field of a frozen dataclass (used by ``__post_init__`` to store checked values)."""
    object.__setattr__(obj, name, value)


class Schedule:
    """A pure, picklable callable ``step -> multiplier`` (peak 1.0 by convention).

    Subclasses are frozen dataclasses that set ``kind`` (the name used by
    ``to_dict``), validate their fields in ``__post_init__`` and implement
    :meth:`at`.
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            if cls.kind in _KINDS:
                raise TypeError(f"schedule kind {cls.kind!r} is already registered")
            _KINDS[cls.kind] = cls

    def __call__(self, step: int) -> float:
        """The multiplier at optimizer step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step!r}")
        return self.at(step)

    def at(self, step: int) -> float:
        """The multiplier at ``step``, without argument checks (``step >= 0``)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description ``{"kind": ..., **fields}``; see :func:`from_dict`."""
        out: dict[str, Any] = {"kind": self.kind}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            out[field.name] = _encode(getattr(self, field.name))
        return out

    def __mul__(self, other: object) -> Schedule:
        # Product and Constant are looked up by kind, so this module imports none of the
        # modules that subclass Schedule (the package imports them all before use).
        constant: Any = _KINDS["constant"]
        product: Any = _KINDS["product"]
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            other = constant(float(other))
        if isinstance(other, Schedule):
            return product((self, other))
        return NotImplemented

    __rmul__ = __mul__


def _encode(value: Any) -> Any:
    if isinstance(value, Schedule):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "kind" in value:
        return from_dict(value)
    if isinstance(value, (list, tuple)):
        return tuple(_decode(v) for v in value)
    return value


def from_dict(d: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.to_dict` output (composites included)."""
    if not isinstance(d, dict):
        raise TypeError(f"from_dict expects a dict, got {type(d).__name__}: {d!r}")
    if "kind" not in d:
        raise ValueError(f"schedule dict needs a 'kind' key, got keys {sorted(d)}")
    kind = d["kind"]
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown schedule kind {kind!r}; known kinds: {sorted(_KINDS)}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - names - {"kind"})
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} for schedule kind {kind!r}")
    return cls(**{k: _decode(v) for k, v in d.items() if k != "kind"})


def kinds() -> dict[str, type[Schedule]]:
    """The registered schedule kinds, ``{kind: class}``."""
    return dict(_KINDS)
