"""The lower-case schedule factories, all in one vocabulary.

Every factory returns one of the schedule classes (so ``to_dict`` / ``from_dict``, equality
and the torch adapter work the same), but takes its arguments in cadence's words rather
than torch's or Hugging Face's:

- ``total_steps``: the horizon, in optimizer steps, over which the schedule decays (or,
  for ``one_cycle``/``warmup_cosine``/``wsd``, the whole run, warmup included);
- ``warmup_steps``: the length of a warmup; the multiplier reaches the peak (1.0) *at*
  step ``warmup_steps`` (step 0 is the first step);
- ``floor``: the final (lowest) multiplier, as a fraction of the peak;
- ``warmup_type`` / ``decay_type``: the shape of a ramp; ``start``: where a ramp starts;
  ``gamma``: a multiplicative factor; ``every``: a period in steps.

The CamelCase classes keep the torch / Hugging Face argument names (``T_max``,
``total_iters``, ``num_warmup_steps``, ...) for users switching from those libraries.
"""

from __future__ import annotations

from collections.abc import Sequence

from cadence.schedules._checks import as_choice, as_float, as_floor, as_int
from cadence.schedules.base import Schedule
from cadence.schedules.cyclic import SGDR, Cyclic, OneCycle
from cadence.schedules.decay import (
    Constant,
    Cosine,
    Exponential,
    InverseSqrt,
    Linear,
    MultiStep,
    Polynomial,
    Step,
)
from cadence.schedules.warmup import Warmup, WarmupStableDecay


def constant(value: float = 1.0) -> Constant:
    """``value`` at every step."""
    return Constant(value)


def linear(total_steps: int, floor: float = 0.0, start: float = 1.0) -> Linear:
    """A straight line from ``start`` at step 0 to ``floor`` at ``total_steps``, then ``floor``.

    (For a ramp *up*, use :func:`warmup`.)
    """
    total = as_int("total_steps", total_steps, 1)
    return Linear(start_factor=as_float("start", start, 0.0), end_factor=as_floor(floor),
                  total_iters=total)


def step(every: int, gamma: float = 0.1) -> Step:
    """Multiply by ``gamma`` every ``every`` steps: ``gamma ** (t // every)``."""
    return Step(step_size=as_int("every", every, 1), gamma=gamma)


def multistep(milestones: Sequence[int], gamma: float = 0.1) -> MultiStep:
    """Multiply by ``gamma`` at each step in ``milestones``: ``gamma ** #{m <= t}``."""
    return MultiStep(milestones=milestones, gamma=gamma)  # type: ignore[arg-type]


def exponential(gamma: float, every: int = 1, staircase: bool = False) -> Exponential:
    """``gamma ** (t / every)`` (``t // every`` with ``staircase``); ``gamma`` in (0, 1]: a
    decay (for a growing rate, as an LR range test has, use ``Exponential(gamma)``)."""
    rate = as_float("gamma", gamma, 0.0, 1.0, low_open=True)
    return Exponential(gamma=rate, decay_steps=as_int("every", every, 1), staircase=staircase)


def polynomial(total_steps: int, power: float = 1.0, floor: float = 0.0) -> Polynomial:
    """``floor + (1 - floor) * (1 - t / total_steps) ** power``, then ``floor``."""
    total = as_int("total_steps", total_steps, 1)
    return Polynomial(total_iters=total, power=power, floor=floor)


def cosine(total_steps: int, floor: float = 0.0) -> Cosine:
    """Half a cosine from 1.0 at step 0 to ``floor`` at ``total_steps``, then ``floor``."""
    return Cosine(T_max=as_int("total_steps", total_steps, 1), floor=floor)


def sgdr(
    cycle_steps: int, cycle_mult: int = 1, floor: float = 0.0, cycle_decay: float = 1.0
) -> SGDR:
    """Cosine from 1.0 to ``floor`` over ``cycle_steps``, then restart; each cycle is
    ``cycle_mult`` times longer than the previous one and its peak ``cycle_decay`` times
    lower."""
    return SGDR(
        T_0=as_int("cycle_steps", cycle_steps, 1),
        T_mult=as_int("cycle_mult", cycle_mult, 1),
        floor=floor,
        cycle_decay=cycle_decay,
    )


_ANNEAL = {"cosine": "cos", "linear": "linear"}


def one_cycle(
    total_steps: int,
    warmup_steps: int | None = None,
    start: float | None = None,
    floor: float | None = None,
    anneal_type: str = "cosine",
    three_phase: bool = False,
) -> OneCycle:
    """The 1cycle policy: from ``start`` up to 1.0 at step ``warmup_steps``, then down to
    ``floor`` at step ``total_steps - 1``, and ``floor`` after.

    ``anneal_type``: ``"cosine"`` or ``"linear"`` for both phases. With ``three_phase``
    the rate first comes back down to ``start`` at step ``2 * warmup_steps``, then anneals
    to ``floor``. Defaults are torch ``OneCycleLR``'s: the peak at 30 % of the run,
    ``start = 1/25``, ``floor = start / 1e4``.
    """
    total = as_int("total_steps", total_steps, 1)
    if warmup_steps is None:
        pct_start = 0.3
    else:
        w = as_int("warmup_steps", warmup_steps, 1)
        last = (total - 2) // 2 if three_phase else total - 2  # each phase needs a step
        if w > last:
            raise ValueError(
                f"warmup_steps must be <= {last} for total_steps={total}"
                f"{' with three_phase' if three_phase else ''}, got {warmup_steps!r}"
            )
        # torch's peak is at step pct_start * total_steps - 1
        pct_start = (w + 1) / total
    div_factor = 25.0 if start is None else 1.0 / as_float("start", start, 0.0, 1.0,
                                                            low_open=True)
    start_value = 1.0 / div_factor
    if floor is None:
        final_div_factor = 1e4
    else:
        low = as_float("floor", floor, 0.0, start_value, low_open=True)
        final_div_factor = start_value / low
    anneal = _ANNEAL[as_choice("anneal_type", anneal_type, tuple(_ANNEAL))]
    return OneCycle(total, pct_start, anneal, div_factor, final_div_factor, three_phase)


def cyclic(
    up_steps: int,
    down_steps: int | None = None,
    floor: float = 0.0,
    peak: float = 1.0,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_mode: str | None = None,
) -> Cyclic:
    """Triangles between ``floor`` and ``peak``: up over ``up_steps``, down over
    ``down_steps`` (default ``up_steps``). ``mode``: ``"triangular"``, ``"triangular2"``
    (the amplitude halves each cycle) or ``"exp_range"`` (amplitude ``gamma ** t``)."""
    up = as_int("up_steps", up_steps, 1)
    down = None if down_steps is None else as_int("down_steps", down_steps, 1)
    high = as_float("peak", peak, 0.0)
    low = as_float("floor", floor, 0.0, high)
    return Cyclic(base_lr=low, max_lr=high, step_size_up=up, step_size_down=down, mode=mode,
                  gamma=gamma, scale_mode=scale_mode)


def inverse_sqrt(warmup_steps: int = 0, timescale: float | None = None) -> InverseSqrt:
    """Linear warmup ``t / warmup_steps``, then ``1 / sqrt((t - warmup_steps + timescale) /
    timescale)``; ``timescale`` defaults to ``warmup_steps`` (10 000 without warmup)."""
    return InverseSqrt(num_warmup_steps=as_int("warmup_steps", warmup_steps, 0),
                       timescale=timescale)


def warmup(
    warmup_steps: int,
    then: Schedule | None = None,
    warmup_type: str = "linear",
    start: float | None = None,
) -> Warmup:
    """Ramp from ``start`` to ``then(0)`` over ``warmup_steps``, then follow ``then`` (default
    constant 1.0) at its own step ``t - warmup_steps``.

    ``warmup_type``: ``"linear"`` (default ``start`` 0), ``"exponential"`` (default 0.01)
    or ``"constant"`` (hold ``start``, default 1/3, as torch ``ConstantLR``).
    """
    w = as_int("warmup_steps", warmup_steps, 1)
    return Warmup(w, Constant() if then is None else then, warmup_type, start)


def warmup_cosine(
    total_steps: int, warmup_steps: int = 0, floor: float = 0.0, warmup_type: str = "linear"
) -> Schedule:
    """Warm up from 0 to 1.0 at step ``warmup_steps``, then cosine to ``floor`` at
    ``total_steps``.

    Matches Hugging Face's ``get_cosine_with_min_lr_schedule_with_warmup`` with
    ``min_lr_rate=floor`` (and ``get_cosine_schedule_with_warmup`` for ``floor=0``).
    """
    total = as_int("total_steps", total_steps, 1)
    w = as_int("warmup_steps", warmup_steps, 0)
    if w >= total:
        raise ValueError(f"warmup_steps must be < total_steps={total}, got {warmup_steps!r}")
    decay = Cosine(total - w, as_floor(floor))
    return decay if w == 0 else Warmup(w, decay, warmup_type)


def wsd(
    total_steps: int,
    warmup_steps: int = 0,
    *,
    decay_steps: int,
    floor: float = 0.0,
    warmup_type: str = "linear",
    decay_type: str = "cosine",
    num_cycles: float = 0.5,
) -> WarmupStableDecay:
    """Warmup-stable-decay over ``total_steps``: warm up from ``floor`` to 1.0 over
    ``warmup_steps``, hold 1.0, decay to ``floor`` over the last ``decay_steps``, then hold
    ``floor``.

    Shapes (``warmup_type``, ``decay_type``): ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
    Hugging Face's ``get_wsd_schedule(num_warmup_steps=warmup_steps,
    num_decay_steps=decay_steps, num_training_steps=total_steps, min_lr_ratio=floor)``.
    """
    total = as_int("total_steps", total_steps, 1)
    w = as_int("warmup_steps", warmup_steps, 0)
    d = as_int("decay_steps", decay_steps, 1)
    if w + d > total:
        raise ValueError(
            f"total_steps={total} is shorter than warmup_steps={w} + decay_steps={d}"
        )
    return WarmupStableDecay(
        num_warmup_steps=w, num_decay_steps=d, num_stable_steps=total - w - d,
        warmup_type=warmup_type, decay_type=decay_type, min_lr_ratio=as_floor(floor),
        num_cycles=num_cycles,
    )


warmup_stable_decay = wsd
