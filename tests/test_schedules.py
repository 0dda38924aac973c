"""Properties of cadence.schedules: values, continuity, composition boundaries, round trips,
argument errors, preview/plot, the epoch helper and the ``cadence schedule`` command."""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cadence import schedules as S
from cadence.schedules.cli import parse_spec, register

SETTINGS = settings(max_examples=50, deadline=None)

durations = st.integers(1, 300)
fractions = st.floats(0.0, 1.0)
steps = st.integers(0, 10**6)


# --- strategies: each draws (schedule, Lipschitz bound |f(t+1) - f(t)| or None) --------
# The bounds come from the closed forms: a cosine of amplitude A over T steps moves at most
# A*pi/(2T) per step; (1 - x)^p over T steps at most max(p/T, T^-p) (mean value theorem
# for p >= 1, subadditivity of x^p for p < 1); 1 - sqrt over n steps at most sqrt(1/n).

@st.composite
def linear(draw):
    s = S.Linear(draw(fractions), draw(fractions), draw(durations))
    return s, abs(s.end_factor - s.start_factor) / s.total_iters


@st.composite
def exponential(draw):
    s = S.Exponential(draw(st.floats(0.5, 1.0)), draw(st.integers(1, 50)))
    return s, 1.0 - s.gamma ** (1.0 / s.decay_steps)


@st.composite
def polynomial(draw):
    s = S.Polynomial(draw(durations), draw(st.floats(0.1, 4.0)), draw(fractions))
    return s, (1 - s.floor) * max(s.power / s.total_iters, s.total_iters**-s.power)


@st.composite
def cosine(draw):
    s = S.Cosine(draw(durations), draw(fractions))
    return s, (1 - s.floor) * math.pi / (2 * s.T_max)


@st.composite
def inverse_sqrt(draw):
    w = draw(st.integers(0, 100))
    s = S.InverseSqrt(w, draw(st.one_of(st.none(), st.integers(1, 1000))))
    return s, max(1 / w if w else 0.0, 1 / (2 * s.timescale))


@st.composite
def one_cycle(draw):
    total = draw(st.integers(20, 500))
    three = draw(st.booleans())
    pct = draw(st.floats(0.1, 0.45 if three else 0.9))
    s = S.OneCycle(total, pct, draw(st.sampled_from(["cos", "linear"])),
                   draw(st.floats(1.0, 100.0)), draw(st.floats(1.0, 1e4)), three)
    ends = [e for e, _, _ in s._phases()]
    lengths = [b - a for a, b in zip([0.0, *ends], ends, strict=False)]
    slope = math.pi / 2 if s.anneal_strategy == "cos" else 1.0
    return s, slope / min(lengths)


@st.composite
def cyclic(draw):
    mode = draw(st.sampled_from(["triangular", "triangular2", "exp_range"]))
    s = S.Cyclic(draw(fractions), 1.0, draw(durations), draw(durations), mode,
                 draw(st.floats(0.9, 1.0)))
    amp = s.max_lr - s.base_lr
    return s, amp * (1 / min(s.step_size_up, s.step_size_down) + (1 - s.gamma))


@st.composite
def wsd(draw):
    shapes = st.sampled_from(["linear", "cosine", "1-sqrt"])
    s = S.WarmupStableDecay(draw(st.integers(0, 100)), draw(durations), draw(st.integers(0, 50)),
                            draw(shapes), draw(shapes), draw(fractions))

    def bound(shape, n):
        return {"linear": 1 / n, "cosine": math.pi / (2 * n), "1-sqrt": math.sqrt(1 / n)}[shape]

    w = s.num_warmup_steps
    b = max(bound(s.warmup_type, w) if w else 0.0, bound(s.decay_type, s.num_decay_steps))
    return s, (1 - s.min_lr_ratio) * b


@st.composite
def warmup(draw):
    then, then_bound = draw(st.one_of(cosine(), polynomial(), linear()))
    kind = draw(st.sampled_from(["linear", "exponential", "constant"]))
    start = draw(st.floats(0.01, 1.0) if kind == "exponential" else fractions)
    s = S.warmup(draw(durations), then=then, warmup_type=kind, start=start)
    target = then(0)
    if kind == "linear":
        ramp = abs(target - start) / s.n
    elif kind == "exponential":
        # geometric ramp start·r^k: its largest step is the last one when rising (r > 1),
        # the first one when falling (a start above the target)
        r = (target / start) ** (1 / s.n)
        ramp = max(target * abs(1 - 1 / r), start * abs(1 - r)) if target else start
    else:
        ramp = None  # a constant warmup jumps at n
    return s, None if ramp is None else max(ramp, then_bound)


@st.composite
def discontinuous(draw):
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return S.Step(draw(durations), draw(fractions)), None
    if choice == 1:
        ms = sorted(draw(st.lists(st.integers(0, 1000), max_size=5)))
        return S.MultiStep(ms, draw(fractions)), None
    if choice == 2:
        return S.Exponential(draw(st.floats(0.5, 1.0)), draw(durations), staircase=True), None
    if choice == 3:
        return S.SGDR(draw(durations), draw(st.integers(1, 3)), draw(fractions),
                      draw(fractions)), None
    return S.Constant(draw(st.floats(0.0, 10.0))), 0.0


continuous = st.one_of(linear(), exponential(), polynomial(), cosine(), inverse_sqrt(),
                       one_cycle(), cyclic(), wsd(), warmup())
leaf = st.one_of(continuous, discontinuous()).map(lambda pair: pair[0])


@st.composite
def composite(draw):
    if draw(st.booleans()):
        pieces = draw(st.lists(st.tuples(leaf, durations), min_size=1, max_size=4))
        return S.sequence([*pieces, draw(leaf)])
    return S.product(*draw(st.lists(leaf, min_size=1, max_size=3)))


any_schedule = st.one_of(leaf, composite())


# --- properties ---------------------------------------------------------------------------

@SETTINGS
@given(any_schedule, st.lists(steps, min_size=1, max_size=20))
def test_values_are_finite_and_non_negative(schedule, ts):
    for t in ts:
        v = schedule(t)
        assert isinstance(v, float)
        assert math.isfinite(v) and v >= 0.0, (schedule, t, v)


@SETTINGS
@given(continuous, st.integers(0, 2000))
def test_continuous_kinds_move_at_most_their_bound_per_step(pair, t0):
    schedule, bound = pair
    assume(bound is not None)  # a constant warmup jumps at its end
    for t in range(t0, t0 + 300):
        assert abs(schedule(t + 1) - schedule(t)) <= bound * (1 + 1e-9) + 1e-12, (schedule, t)


@SETTINGS
@given(st.integers(1, 50), st.integers(1, 4), fractions, fractions)
def test_sgdr_restarts_at_its_peak_and_is_smooth_inside_a_cycle(t0, t_mult, floor, decay):
    s = S.SGDR(t0, t_mult, floor, decay)
    start, bound = 0, (1 - floor) * math.pi / (2 * t0)
    for i in range(4):
        assert s(start) == pytest.approx(floor + (1 - floor) * decay**i, rel=1e-12)
        length = t0 * t_mult**i
        for t in range(start, start + length - 1):
            assert abs(s(t + 1) - s(t)) <= bound * (1 + 1e-9) + 1e-12
        start += length
        assert s.cycle(start - 1) == (i, length - 1, length)


@SETTINGS
@given(st.lists(st.tuples(leaf, durations), min_size=1, max_size=4), leaf)
def test_sequence_pieces_start_at_their_local_step_zero(pieces, last):
    seq = S.sequence([*pieces, last])
    boundary = 0
    for schedule, duration in pieces:
        assert seq(boundary) == schedule(0)
        assert seq(boundary + duration - 1) == schedule(duration - 1)
        boundary += duration
    assert seq.boundaries[-1] == boundary
    for j in (0, 1, 7, 10**5):  # the last piece runs open-ended
        assert seq(boundary + j) == last(j)


@SETTINGS
@given(st.one_of(cosine(), polynomial(), linear()).map(lambda p: p[0]), durations,
       st.sampled_from(["linear", "exponential", "constant"]), st.floats(0.01, 1.0))
def test_warmup_reaches_the_start_of_then_exactly_at_n(then, n, kind, start):
    s = S.warmup(n, then=then, warmup_type=kind, start=start)
    assert s(0) == start
    assert s(n) == then(0)
    assert s(n + 5) == then(5)
    if kind != "constant" and n > 1:
        assert min(start, then(0)) <= s(n - 1) <= max(start, then(0))


@pytest.mark.parametrize("kind", ["linear", "exponential"])
def test_warmup_into_a_decay_reaches_exactly_one(kind):
    s = S.warmup_cosine(1000, 100, floor=0.1, warmup_type=kind)
    assert s(100) == 1.0
    assert s(99) < 1.0
    assert s(1000) == pytest.approx(0.1) and s(5000) == pytest.approx(0.1)
    for then in (S.Polynomial(50, 2.0), S.WarmupStableDecay(0, 10, 5),
                 S.OneCycle(100, div_factor=1.0)):
        assert S.warmup(7, then=then, warmup_type=kind)(7) == 1.0


@SETTINGS
@given(any_schedule)
def test_to_dict_round_trips_through_json(schedule):
    d = schedule.to_dict()
    back = S.from_dict(json.loads(json.dumps(d)))
    assert back == schedule
    assert back.to_dict() == d
    assert [back(t) for t in (0, 1, 17, 1000)] == [schedule(t) for t in (0, 1, 17, 1000)]


@SETTINGS
@given(any_schedule)
def test_pickle_round_trip(schedule):
    back = pickle.loads(pickle.dumps(schedule))
    assert back == schedule and hash(back) == hash(schedule)
    assert back(123) == schedule(123)


def test_every_kind_is_covered_by_from_dict():
    built = {
        S.Constant(0.5), S.Linear(), S.Step(3), S.MultiStep([1, 2]), S.Exponential(0.9),
        S.Polynomial(), S.Cosine(10), S.SGDR(5), S.OneCycle(100), S.Cyclic(0.1),
        S.InverseSqrt(10), S.WarmupStableDecay(1, 2, 7), S.warmup(3), S.sequence([S.Constant()]),
        S.product(S.Cosine(3)),
    }
    assert {s.kind for s in built} == set(S.kinds())
    for s in built:
        assert S.from_dict(s.to_dict()) == s
        assert repr(s).startswith(type(s).__name__ + "(")


def test_readable_repr_and_value_equality():
    s = S.warmup(10, then=S.Cosine(90, floor=0.1))
    assert repr(s) == ("Warmup(n=10, then=Cosine(T_max=90, floor=0.1), warmup_type='linear', "
                       "start=0.0)")
    assert s == S.warmup(10, then=S.cosine(total_steps=90, floor=0.1))
    assert s != S.warmup(10, then=S.Cosine(90, floor=0.2))


def test_values_at_known_points():
    """Hand-computed values (closed forms evaluated by hand, not by the code)."""
    assert S.Cosine(100, floor=0.2)(50) == pytest.approx(0.6)
    assert S.Exponential(0.5, decay_steps=10)(5) == pytest.approx(2**-0.5)
    assert S.Exponential(0.5, decay_steps=10, staircase=True)(19) == 0.5
    assert S.Polynomial(10, 2.0)(5) == pytest.approx(0.25)
    assert S.InverseSqrt(100)(400) == pytest.approx(0.5)  # 1/sqrt((400 + 0) / 100)
    sgdr = S.SGDR(10, 2, cycle_decay=0.5)  # restarts at 10 and 10 + 20, peaks halve
    assert (sgdr(10), sgdr(30), sgdr(20)) == pytest.approx((0.5, 0.25, 0.25))
    assert S.Cyclic(0.0, 1.0, 4, 4)(2) == 0.5
    assert S.Cyclic(0.0, 1.0, 4, 4, "triangular2")(12) == 0.5  # 2nd cycle peak halved
    assert S.wsd(40, 10, decay_steps=10, decay_type="linear")(35) == 0.5
    assert S.wsd(40, 10, decay_steps=10, decay_type="1-sqrt")(35) == pytest.approx(
        1 - math.sqrt(0.5))
    assert S.Cosine(10) * 2.0 == 2.0 * S.Cosine(10) == S.product(S.Cosine(10), S.Constant(2.0))
    assert (0.5 * S.Cosine(10))(0) == 0.5


# --- the lower-case factories: one vocabulary (total_steps, warmup_steps, floor, ...) -------

FACTORY_IS_CLASS = [
    (S.constant(0.5), S.Constant(0.5)),
    (S.linear(10, floor=0.2, start=0.5), S.Linear(0.5, 0.2, 10)),
    (S.step(every=3, gamma=0.5), S.Step(3, 0.5)),
    (S.multistep([2, 5], gamma=0.3), S.MultiStep((2, 5), 0.3)),
    (S.exponential(0.9, every=4, staircase=True), S.Exponential(0.9, 4, True)),
    (S.polynomial(10, power=2.0, floor=0.1), S.Polynomial(10, 2.0, 0.1)),
    (S.cosine(10, floor=0.1), S.Cosine(10, 0.1)),
    (S.sgdr(5, cycle_mult=2, floor=0.1, cycle_decay=0.5), S.SGDR(5, 2, 0.1, 0.5)),
    (S.one_cycle(100), S.OneCycle(100)),
    (S.one_cycle(100, start=0.1, anneal_type="linear", three_phase=True),
     S.OneCycle(100, 0.3, "linear", 10.0, 1e4, True)),
    (S.one_cycle(50, warmup_steps=14), S.OneCycle(50, 0.3)),
    (S.cyclic(4, 6, floor=0.02, mode="exp_range", gamma=0.97),
     S.Cyclic(0.02, 1.0, 4, 6, "exp_range", 0.97)),
    (S.inverse_sqrt(10, timescale=20), S.InverseSqrt(10, 20)),
    (S.warmup(5, warmup_type="constant", start=0.5), S.Warmup(5, S.Constant(), "constant", 0.5)),
    (S.warmup_cosine(100, 10, floor=0.1), S.Warmup(10, S.Cosine(90, 0.1))),
    (S.warmup_cosine(100, floor=0.1), S.Cosine(100, 0.1)),
    (S.wsd(100, 10, decay_steps=20, floor=0.1), S.WarmupStableDecay(10, 20, 70, min_lr_ratio=0.1)),
]


@pytest.mark.parametrize(("made", "expected"), FACTORY_IS_CLASS,
                         ids=[type(e).__name__ for _, e in FACTORY_IS_CLASS])
def test_factories_return_the_classes_with_their_torch_arguments(made, expected):
    assert made == expected and type(made) is type(expected)
    assert made.to_dict() == expected.to_dict()


def test_factories_share_one_vocabulary():
    """``total_steps`` is the horizon, ``floor`` the final multiplier, ``warmup_steps`` the
    step at which the peak is reached; values checked against the closed forms by hand."""
    assert S.cosine(total_steps=100, floor=0.1)(100) == 0.1
    assert S.cosine(total_steps=100, floor=0.1)(50) == pytest.approx(0.55)
    assert S.cosine(total_steps=100, floor=0.1)(10**6) == 0.1
    line = S.linear(total_steps=10, floor=0.2)
    assert (line(0), line(5), line(10), line(50)) == pytest.approx((1.0, 0.6, 0.2, 0.2))
    poly = S.polynomial(total_steps=10, power=2.0, floor=0.1)
    assert (poly(5), poly(10)) == pytest.approx((0.1 + 0.9 * 0.25, 0.1))
    # warmups: linear from 0, the peak exactly at warmup_steps
    w = S.warmup_cosine(total_steps=100, warmup_steps=10, floor=0.1)
    assert [w(t) for t in range(11)] == pytest.approx([t / 10 for t in range(11)], abs=1e-15)
    assert w(10) == 1.0 and w(55) == pytest.approx(0.55) and w(100) == pytest.approx(0.1)
    ramp = S.warmup(warmup_steps=4, then=S.cosine(total_steps=10, floor=0.1))
    assert [ramp(t) for t in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert ramp(14) == pytest.approx(0.1)
    # wsd: HF's warmup starts at the floor; hold 1.0; cosine to the floor over decay_steps
    wsd = S.wsd(total_steps=100, warmup_steps=10, decay_steps=20, floor=0.1)
    assert S.warmup_stable_decay is S.wsd
    assert (wsd(0), wsd(5), wsd(10), wsd(79), wsd(80)) == pytest.approx((0.1, 0.55, 1, 1, 1))
    assert (wsd(90), wsd(100), wsd(500)) == pytest.approx((0.55, 0.1, 0.1))
    # one_cycle: start -> 1.0 at warmup_steps -> floor at total_steps - 1
    oc = S.one_cycle(total_steps=101, warmup_steps=20, start=0.1, floor=0.001)
    assert (oc(0), oc(10), oc(20)) == pytest.approx((0.1, 0.55, 1.0), rel=1e-12)
    assert max(range(101), key=oc) == 20
    assert (oc(60), oc(100), oc(150)) == pytest.approx((0.5005, 0.001, 0.001), rel=1e-12)
    three = S.one_cycle(total_steps=101, warmup_steps=20, start=0.1, three_phase=True)
    assert (three(20), three(40)) == pytest.approx((1.0, 0.1), rel=1e-12)
    # periods and factors
    assert (S.step(every=3, gamma=0.5)(5), S.step(every=3, gamma=0.5)(6)) == (0.5, 0.25)
    assert S.exponential(gamma=0.5, every=10)(5) == pytest.approx(2**-0.5)
    assert S.multistep([2, 5], gamma=0.1)(5) == pytest.approx(0.01)
    sgdr = S.sgdr(cycle_steps=10, cycle_mult=2, floor=0.1)
    assert (sgdr(5), sgdr(10), sgdr(20), sgdr(30)) == pytest.approx((0.55, 1.0, 0.55, 1.0))
    tri = S.cyclic(up_steps=4, floor=0.2)
    assert (tri(0), tri(2), tri(4), tri(8)) == pytest.approx((0.2, 0.6, 1.0, 0.2))
    assert S.cyclic(up_steps=4, floor=0.2, peak=0.6)(4) == pytest.approx(0.6)
    inv = S.inverse_sqrt(warmup_steps=100)
    assert (inv(50), inv(100), inv(400)) == pytest.approx((0.5, 1.0, 0.5))
    assert S.constant(0.5)(7) == 0.5


def test_factories_are_what_configuration_strings_call():
    lower = ["constant", "linear", "step", "multistep", "exponential", "polynomial", "cosine",
             "sgdr", "one_cycle", "cyclic", "inverse_sqrt", "warmup", "warmup_cosine", "wsd",
             "warmup_stable_decay", "sequence", "join", "product"]
    for name in lower:
        assert S.FACTORIES[name] is getattr(S, name), name
        assert not isinstance(S.FACTORIES[name], type), name
    for cls in S.kinds().values():
        if cls not in (S.Sequential, S.Product):
            assert S.FACTORIES[cls.__name__] is cls


def test_negative_step_is_rejected():
    with pytest.raises(ValueError, match=r"step must be >= 0, got -1"):
        S.Cosine(10)(-1)


# --- bad input -----------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
BAD = [
    (lambda: S.Cosine(0), "T_max", "0"),
    (lambda: S.Cosine(-5), "T_max", "-5"),
    (lambda: S.Cosine(100, floor=1.5), "floor", "1.5"),
    (lambda: S.Cosine(100, floor=NAN), "floor", "nan"),
    (lambda: S.Step(0), "step_size", "0"),
    (lambda: S.Step(2.5), "step_size", "2.5"),
    (lambda: S.Step(3, gamma=INF), "gamma", "inf"),
    (lambda: S.Exponential(NAN), "gamma", "nan"),
    (lambda: S.Exponential(0.0), "gamma", "0.0"),
    (lambda: S.Exponential(0.9, decay_steps=-1), "decay_steps", "-1"),
    (lambda: S.MultiStep([5, 3]), "milestones", "[5, 3]"),
    (lambda: S.MultiStep([-1, 3]), "milestones[0]", "-1"),
    (lambda: S.Linear(total_iters=0), "total_iters", "0"),
    (lambda: S.Linear(start_factor=-0.1), "start_factor", "-0.1"),
    (lambda: S.Polynomial(10, power=0.0), "power", "0.0"),
    (lambda: S.Polynomial(10, floor=-0.1), "floor", "-0.1"),
    (lambda: S.Constant(-1.0), "value", "-1.0"),
    (lambda: S.Constant(INF), "value", "inf"),
    (lambda: S.SGDR(0), "T_0", "0"),
    (lambda: S.SGDR(10, T_mult=0), "T_mult", "0"),
    (lambda: S.SGDR(10, cycle_decay=1.5), "cycle_decay", "1.5"),
    (lambda: S.SGDR(10, floor=2.0), "floor", "2.0"),
    (lambda: S.OneCycle(0), "total_steps", "0"),
    (lambda: S.OneCycle(100, pct_start=0.0), "pct_start", "0.0"),
    (lambda: S.OneCycle(100, pct_start=1.2), "pct_start", "1.2"),
    (lambda: S.OneCycle(3, pct_start=0.3), "pct_start", "0.3"),
    (lambda: S.OneCycle(100, pct_start=0.6, three_phase=True), "pct_start", "0.6"),
    (lambda: S.OneCycle(100, anneal_strategy="cosine"), "anneal_strategy", "'cosine'"),
    (lambda: S.OneCycle(100, div_factor=0.5), "div_factor", "0.5"),
    (lambda: S.Cyclic(base_lr=2.0, max_lr=1.0), "base_lr", "2.0"),
    (lambda: S.Cyclic(0.1, step_size_up=0), "step_size_up", "0"),
    (lambda: S.Cyclic(0.1, step_size_down=-2), "step_size_down", "-2"),
    (lambda: S.Cyclic(0.1, mode="sawtooth"), "mode", "'sawtooth'"),
    (lambda: S.Cyclic(0.1, gamma=0.0), "gamma", "0.0"),
    (lambda: S.InverseSqrt(-1), "num_warmup_steps", "-1"),
    (lambda: S.InverseSqrt(10, timescale=0), "timescale", "0"),
    (lambda: S.WarmupStableDecay(10, 0), "num_decay_steps", "0"),
    (lambda: S.WarmupStableDecay(10, 20, min_lr_ratio=2.0), "min_lr_ratio", "2.0"),
    (lambda: S.wsd(100, 10, decay_steps=0), "decay_steps", "0"),
    (lambda: S.wsd(100, 10, decay_steps=20, floor=2.0), "floor", "2.0"),
    (lambda: S.wsd(100, 50, decay_steps=60), "total_steps", "100"),
    (lambda: S.wsd(100, -1, decay_steps=60), "warmup_steps", "-1"),
    (lambda: S.wsd(100, 10, decay_steps=20, decay_type="sqrt"), "decay_type", "'sqrt'"),
    (lambda: S.Warmup(0), "n", "0"),
    (lambda: S.Warmup(5, warmup_type="cubic"), "warmup_type", "'cubic'"),
    (lambda: S.warmup(0), "warmup_steps", "0"),
    (lambda: S.warmup(-3), "warmup_steps", "-3"),
    (lambda: S.warmup(10, warmup_type="exponential", start=0.0), "start", "0.0"),
    (lambda: S.warmup(10, start=1.5), "start", "1.5"),
    (lambda: S.warmup(10, warmup_type="cubic"), "warmup_type", "'cubic'"),
    (lambda: S.constant(-1.0), "value", "-1.0"),
    (lambda: S.linear(0), "total_steps", "0"),
    (lambda: S.linear(10, floor=1.5), "floor", "1.5"),
    (lambda: S.linear(10, start=-0.1), "start", "-0.1"),
    (lambda: S.step(0), "every", "0"),
    (lambda: S.step(3, gamma=INF), "gamma", "inf"),
    (lambda: S.multistep([5, 3]), "milestones", "[5, 3]"),
    (lambda: S.exponential(0.9, every=0), "every", "0"),
    (lambda: S.polynomial(0), "total_steps", "0"),
    (lambda: S.polynomial(10, floor=-0.1), "floor", "-0.1"),
    (lambda: S.cosine(0), "total_steps", "0"),
    (lambda: S.cosine(10, floor=1.5), "floor", "1.5"),
    (lambda: S.sgdr(0), "cycle_steps", "0"),
    (lambda: S.sgdr(10, cycle_mult=0), "cycle_mult", "0"),
    (lambda: S.one_cycle(0), "total_steps", "0"),
    (lambda: S.one_cycle(100, warmup_steps=0), "warmup_steps", "0"),
    (lambda: S.one_cycle(100, warmup_steps=99), "warmup_steps", "99"),
    (lambda: S.one_cycle(100, warmup_steps=50, three_phase=True), "warmup_steps", "50"),
    (lambda: S.one_cycle(100, start=0.0), "start", "0.0"),
    (lambda: S.one_cycle(100, start=0.1, floor=0.2), "floor", "0.2"),
    (lambda: S.one_cycle(100, anneal_type="cos"), "anneal_type", "'cos'"),
    (lambda: S.cyclic(0), "up_steps", "0"),
    (lambda: S.cyclic(4, down_steps=0), "down_steps", "0"),
    (lambda: S.cyclic(4, floor=2.0), "floor", "2.0"),
    (lambda: S.inverse_sqrt(-1), "warmup_steps", "-1"),
    (lambda: S.warmup_cosine(100, 100), "warmup_steps", "100"),
    (lambda: S.warmup_cosine(0), "total_steps", "0"),
    (lambda: S.warmup_cosine(100, floor=1.01), "floor", "1.01"),
    (lambda: S.sequence([(S.Cosine(10), 0), S.Constant()]), "pieces[0] duration", "0"),
    (lambda: S.sequence([(S.Cosine(10), None), S.Constant()]), "pieces[0]", "None"),
    (lambda: S.sequence([]), "pieces", "()"),
    (lambda: S.join([S.Cosine(5), S.Cosine(5), S.Cosine(5)], [5, 3]), "boundaries", "[5, 3]"),
    (lambda: S.join([S.Cosine(5), S.Cosine(5)], [0]), "boundaries[0]", "0"),
    (lambda: S.join([S.Cosine(5), S.Cosine(5)], [3, 4]), "boundaries", "[3, 4]"),
    (lambda: S.product(), "factors", "()"),
    (lambda: S.epochs_to_steps(3, 0), "steps_per_epoch", "0"),
    (lambda: S.epochs_to_steps([1, -2], 10), "epochs[1]", "-2"),
    (lambda: S.from_dict({"kind": "nope"}), "kind", "'nope'"),
    (lambda: S.from_dict({"kind": "cosine", "T_max": 3, "eta_min": 0.1}), "eta_min", "cosine"),
]


@pytest.mark.parametrize(("build", "name", "value"), BAD, ids=[f"{n}={v}" for _, n, v in BAD])
def test_bad_input_raises_value_error_naming_argument_and_value(build, name, value):
    with pytest.raises(ValueError) as info:
        build()
    message = str(info.value)
    assert name in message and value in message, message


@pytest.mark.parametrize("build", [
    lambda: S.Cosine("10"),
    lambda: S.Step(True),
    lambda: S.warmup(10, then=lambda t: 1.0),
    lambda: S.product(S.Cosine(3), 2),
    lambda: S.from_dict([1, 2]),
])
def test_wrong_types_raise_type_error(build):
    with pytest.raises(TypeError):
        build()


# --- preview, plot, epochs, CLI ---------------------------------------------------------------

def test_preview_values_and_groups():
    s = S.warmup_cosine(20, 5)
    assert S.preview(s, 20) == {"multiplier": [s(t) for t in range(20)]}
    assert S.preview(s, [0, 5, 19]) == {"multiplier": [0.0, 1.0, s(19)]}
    groups = [{"name": "backbone", "lr": 1e-4}, {"name": "head", "lr": 1e-3}]
    out = S.preview({"backbone": S.Constant(), "*": s}, 10, groups=groups)
    assert out == {"backbone": [1e-4] * 10, "head": [1e-3 * s(t) for t in range(10)]}
    with pytest.raises(ValueError, match="'head'"):
        S.preview(s, 3, groups=[{"name": "head"}])


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "lr.png"
    fig = S.plot(S.warmup_cosine(50, 5), 50, groups=[{"name": "a", "lr": 0.1},
                                                     {"name": "b", "lr": 0.2}], path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["a", "b"]


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"cadence\[report\]"):
        S.plot(S.Cosine(10), 10)


def test_epochs_to_steps():
    assert S.epochs_to_steps(3, 100) == 300
    assert S.epochs_to_steps(0.5, 7) == 4  # 3.5 rounds to the nearest step, half up
    assert S.epochs_to_steps({"milestones": [30, 60], "T_0": 10, "x": None}, 50) == {
        "milestones": [1500, 3000], "T_0": 500, "x": None}


def test_parse_spec_calls_and_json():
    expected = S.warmup(50, then=S.Cosine(950, floor=0.1))
    assert parse_spec("warmup(50, then=cosine(950, floor=0.1))") == expected
    assert parse_spec(json.dumps(expected.to_dict())) == expected
    assert parse_spec("join([constant(0.5), cosine(total_steps=10)], [4])") == S.join(
        [S.Constant(0.5), S.Cosine(10)], [4])
    # the classes keep their torch / Hugging Face arguments under their own names
    assert parse_spec("Cosine(T_max=10, floor=0.1)") == S.cosine(10, floor=0.1)
    assert parse_spec("WarmupStableDecay(num_warmup_steps=5, num_decay_steps=10, "
                      "num_stable_steps=85)") == S.wsd(100, 5, decay_steps=10)
    # a torch-style argument given to a factory names the factory's arguments and the class
    with pytest.raises(ValueError, match=r"cosine\(total_steps, floor=0\.0\).*Cosine\(\.\.\.\)"):
        parse_spec("cosine(T_max=10)")
    for evil in ("__import__('os').system('true')", "cosine(10).__class__", "cosine(*[10])",
                 "cosine(open('x'))", "1 + 2"):
        with pytest.raises(ValueError):
            parse_spec(evil)


def _cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["schedule", *argv])
    return args.func(args)


def test_cli_prints_values_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "out.png"
    spec = "warmup_cosine(total_steps=100, warmup_steps=10)"
    assert _cli([spec, "--steps", "100", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "Warmup(n=10" in out and "max 1 at step 10" in out
    assert png.exists()
    assert _cli([spec, "--steps", "5", "--json", "--lr", "0.1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["values"] == pytest.approx([0.1 * t / 10 for t in range(5)], rel=1e-12)
    assert S.from_dict(data["schedule"]) == S.warmup_cosine(100, 10)
    assert _cli(["cosine(0)"]) == 2
    assert "total_steps must be >= 1, got 0" in capsys.readouterr().err
