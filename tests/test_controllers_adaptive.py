"""Adaptive controllers: each rule on synthetic signals, bounds, no flip-flop, resume."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from cadence.controllers._follow import Follower
from cadence.controllers.drift import DriftResponse
from cadence.controllers.layerwise import LayerwiseLR
from cadence.controllers.momentum import MomentumControl
from cadence.controllers.noise import NoiseAdaptiveLR
from cadence.controllers.scale import (
    ScaleAware,
    estimate_fan_in,
    scale_defaults,
)
from cadence.controllers.weight_decay import WeightDecayControl
from cadence.protocol import Context, GroupView
from cadence.regime.lr_range import lr_range_test


def ctx(step=100, groups=None, warmup=0, metrics=None, metrics_step=None, sched=None):
    groups = groups or [GroupView("g", {"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.1},
                                  {"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.1}, 100)]
    return Context(step=step, total_steps=1000, groups=groups, warmup_steps=warmup,
                   schedule_multiplier=sched or {g.name: 1.0 for g in groups},
                   metrics=metrics or {}, metrics_step=metrics_step,
                   num_params=sum(g.num_params for g in groups))


def lr_product(proposals):
    out = 1.0
    for p in proposals:
        assert p.knob == "lr" and p.reason
        out *= p.factor
    return out


def direction_changes(factors):
    signs = [1 if f > 1 else -1 for f in factors if f != 1.0]
    return sum(a != b for a, b in zip(signs, signs[1:], strict=False))


# -- follower --------------------------------------------------------------------------
def test_follower_is_bounded_and_needs_a_bigger_gap_to_reverse() -> None:
    f = Follower((0.5, 2.0), max_step=1.1, deadband=0.05, reverse=3.0)
    for _ in range(50):
        f.move("k", 100.0)
    assert f.get("k") == pytest.approx(2.0)
    assert f.move("k", 2.0 / 1.1) is None  # 10 % back: inside the widened reverse band
    assert f.move("k", 1.0) == pytest.approx(1 / 1.1)


# -- noise ------------------------------------------------------------------------------
def test_noise_lr_follows_mccandlish_target_within_bounds() -> None:
    c = NoiseAdaptiveLR(bounds=(0.3, 1.0), max_step=1.05, beta=0.0)
    sig = {"grad_noise.valid": 1.0, "grad_noise": 3.0, "grad_noise.long": 1.0}
    total = 1.0
    for _ in range(100):
        props = c.propose(sig, ctx())
        total *= lr_product(props)
    assert total == pytest.approx((1 + 1.0) / (1 + 3.0), rel=0.06)  # within the dead band
    assert "above its long-run mean" in props[0].reason if props else True
    sig["grad_noise"] = 100.0
    for _ in range(200):
        total *= lr_product(c.propose(sig, ctx()))
    assert total == pytest.approx(0.3)  # lower bound


def test_noise_lr_is_silent_in_warmup_and_without_an_estimate() -> None:
    c = NoiseAdaptiveLR()
    sig = {"grad_noise.valid": 1.0, "grad_noise": 9.0, "grad_noise.long": 1.0}
    assert c.propose(sig, ctx(step=5, warmup=10)) == []
    assert c.propose({**sig, "grad_noise.valid": 0.0}, ctx()) == []


def test_noise_lr_does_not_flip_flop_on_alternating_noise() -> None:
    c = NoiseAdaptiveLR()
    factors = []
    for i in range(400):
        s = 4.0 if i % 2 else 0.25
        factors += [p.factor for p in c.propose(
            {"grad_noise.valid": 1.0, "grad_noise": s, "grad_noise.long": 1.0}, ctx())]
    assert direction_changes(factors) <= 1


# -- layerwise ------------------------------------------------------------------------------
def _groups3():
    return [GroupView(n, {"lr": 1e-3}, {"lr": 1e-3}, 10) for n in ("a", "b", "c")]


def test_layerwise_trust_mode_slows_the_fast_group_with_bounded_spread() -> None:
    c = LayerwiseLR(alpha=0.5, max_spread=4.0, max_step=1.05, beta=0.0)
    sig = {"update_ratio.valid": 1.0, "update_ratio.rel/a": 4.0, "update_ratio.rel/b": 1.0,
           "update_ratio.rel/c": 1.0}
    mult = {"a": 1.0, "b": 1.0, "c": 1.0}
    for _ in range(100):
        for p in c.propose(sig, ctx(groups=_groups3())):
            mult[p.group] *= p.factor
    # target a ∝ 4^-0.5 relative to the others, centred: a/b = 0.5
    assert mult["a"] / mult["b"] == pytest.approx(0.5, rel=0.07)
    sig["update_ratio.rel/a"] = 1e6  # extreme: the spread bound holds
    for _ in range(200):
        for p in c.propose(sig, ctx(groups=_groups3())):
            mult[p.group] *= p.factor
    assert max(mult.values()) / min(mult.values()) <= 4.0 + 1e-9


def test_layerwise_falls_back_to_uniform_when_validation_degrades() -> None:
    c = LayerwiseLR(max_step=1.05, beta=0.0, tol=0.02, patience=2)
    sig = {"update_ratio.valid": 1.0, "update_ratio.rel/a": 4.0, "update_ratio.rel/b": 1.0,
           "update_ratio.rel/c": 1.0}
    mult = {"a": 1.0, "b": 1.0, "c": 1.0}
    metrics = {"val_loss": 1.0}
    for step in range(20):
        for p in c.propose(sig, ctx(step, _groups3(), metrics=metrics, metrics_step=0)):
            mult[p.group] *= p.factor
    assert mult["a"] < 0.9
    reasons = []
    for step in range(20, 200):
        m = {"val_loss": 1.10}  # 10 % worse than when per-layer rates began
        for p in c.propose(sig, ctx(step, _groups3(), metrics=m, metrics_step=step)):
            mult[p.group] *= p.factor
            reasons.append(p.reason)
    assert c.fallen_back
    assert any("back to uniform rates" in r for r in reasons)
    assert all(v == pytest.approx(1.0, abs=0.05) for v in mult.values())


def test_layerwise_falls_back_when_no_validation_came_before_its_first_move() -> None:
    """The reference used to be taken only at the first move: with no observation yet it
    stayed None and the fallback could never fire (issue 11)."""
    c = LayerwiseLR(max_step=1.05, beta=0.0, tol=0.02, patience=2)
    sig = {"update_ratio.valid": 1.0, "update_ratio.rel/a": 4.0, "update_ratio.rel/b": 1.0,
           "update_ratio.rel/c": 1.0}
    for step in range(20):  # per-layer rates start with no validation value observed
        c.propose(sig, ctx(step, _groups3()))
    assert not c.fallen_back
    for step, val in zip(range(20, 60), [1.0] + [1.4] * 39, strict=True):
        c.propose(sig, ctx(step, _groups3(), metrics={"val_loss": val}, metrics_step=step))
    assert c.fallen_back


def test_layerwise_does_not_flip_flop_on_alternating_ratios() -> None:
    c = LayerwiseLR()
    factors = {"a": [], "b": []}
    groups = _groups3()[:2]
    for i in range(400):
        hi, lo = (3.0, 1 / 3) if i % 2 else (1 / 3, 3.0)
        for p in c.propose({"update_ratio.rel/a": hi, "update_ratio.rel/b": lo},
                           ctx(groups=groups)):
            factors[p.group].append(p.factor)
    assert all(direction_changes(f) <= 1 for f in factors.values())


# -- momentum ---------------------------------------------------------------------------
def _momentum_run(c, cos_values, groups=None):
    groups = groups or [GroupView("g", {"momentum": 0.9}, {"momentum": 0.9}, 10)]
    values = []
    for cos in cos_values:
        props = c.propose({"grad_alignment.ema": cos}, ctx(groups=groups))
        for p in props:
            assert p.knob == "momentum" and p.value is not None and p.reason
            groups = [GroupView("g", {"momentum": p.value}, {"momentum": 0.9}, 10)]
        values.append(groups[0].values["momentum"])
    return values


def test_momentum_falls_on_oscillation_and_rises_on_alignment_within_bounds() -> None:
    down = _momentum_run(MomentumControl(), [-0.5] * 200)
    assert down[-1] == pytest.approx(0.8)  # 1 − β doubled at most
    assert all(b <= a + 1e-12 for a, b in zip(down, down[1:], strict=False))
    up = _momentum_run(MomentumControl(), [0.8] * 200)
    assert up[-1] == pytest.approx(0.95)  # 1 − β halved at most
    tempered = MomentumControl()
    g = [GroupView("g", {"momentum": 0.9}, {"momentum": 0.9}, 10)]
    for _ in range(20):
        assert tempered.propose({"grad_alignment.ema": 0.8, "saturation.max": 0.5},
                                ctx(groups=g)) == []


def test_momentum_holds_on_alternating_alignment_and_skips_groups_without_momentum() -> None:
    values = _momentum_run(MomentumControl(), [0.9 if i % 2 else -0.9 for i in range(300)])
    assert values[-1] == pytest.approx(0.9)
    c = MomentumControl()
    no_mom = [GroupView("sgd", {"lr": 0.1, "momentum": 0.0}, {"lr": 0.1, "momentum": 0.0}, 10),
              GroupView("adagrad", {"lr": 0.1}, {"lr": 0.1}, 10)]
    for _ in range(10):
        assert c.propose({"grad_alignment.ema": -0.9}, ctx(groups=no_mom)) == []


# -- weight decay ---------------------------------------------------------------------------
def test_weight_decay_keeps_lr_times_wd_on_schedule() -> None:
    c = WeightDecayControl()
    g = [GroupView("g", {"lr": 2e-3 * 0.5, "weight_decay": 0.1}, {"lr": 1e-3, "weight_decay": 0.1},
                   10),
         GroupView("bias", {"lr": 1e-3, "weight_decay": 0.0}, {"lr": 1e-3, "weight_decay": 0.0},
                   10)]
    props = c.propose({"loss_trend.mean": 1.0}, ctx(groups=g, sched={"g": 0.5, "bias": 1.0}))
    assert [p.group for p in props] == ["g"]  # zero-decay group untouched
    # controllers doubled the lr (2e-3·0.5 = 1e-3 · 0.5 · 2): decay halves, lr·wd on schedule
    assert props[0].value == pytest.approx(0.05)
    assert "lr·wd" in props[0].reason


def test_weight_decay_rises_when_the_generalisation_gap_widens() -> None:
    c = WeightDecayControl(couple=False, widen=0.1, patience=2, raise_factor=1.25)
    g = [GroupView("g", {"lr": 1e-3, "weight_decay": 0.1}, {"lr": 1e-3, "weight_decay": 0.1}, 1)]
    sig = {"loss_trend.mean": 1.0}
    assert c.propose(sig, ctx(groups=g, metrics={"val_loss": 1.05}, metrics_step=1)) == []
    values = []
    for k, val in enumerate([1.3, 1.3, 1.3, 1.3]):  # gap 30 % vs 5 % baseline
        props = c.propose(sig, ctx(groups=g, metrics={"val_loss": val}, metrics_step=2 + k))
        values += [p.value for p in props]
    assert values[-1] == pytest.approx(0.1 * 1.25**2)
    assert c.gap_mult <= 4.0


def test_weight_decay_gap_does_not_flip_flop() -> None:
    c = WeightDecayControl(couple=False)
    g = [GroupView("g", {"lr": 1e-3, "weight_decay": 0.1}, {"lr": 1e-3, "weight_decay": 0.1}, 1)]
    mults = []
    for k in range(60):
        val = 1.05 if k == 0 else (1.2 if k % 2 else 1.1)  # gap alternating in the dead band
        c.propose({"loss_trend.mean": 1.0}, ctx(groups=g, metrics={"val_loss": val},
                                                 metrics_step=k))
        mults.append(c.gap_mult)
    assert direction_changes([b / a for a, b in zip(mults, mults[1:], strict=False)
                              if b != a]) <= 1


# -- drift ----------------------------------------------------------------------------------
def test_drift_response_rewarms_in_stages_then_returns() -> None:
    c = DriftResponse(rewarm_to=0.5, stages=4, stage_steps=10, hold_steps=20, decay_steps=40,
                      cooldown=50)
    mult, wd = 1.0, 1.0
    history = []
    for step in range(300):
        sig = {"drift": 1.0 if step == 100 else 0.0, "drift.cusum": 7.5}
        for p in c.propose(sig, ctx(step, sched={"g": 0.1})):
            assert p.reason.startswith("drift:")
            if p.knob == "lr":
                mult *= p.factor
            else:
                wd *= p.factor
        history.append(mult)
        assert mult * wd == pytest.approx(1.0)  # lr·wd held
    assert history[99] == 1.0
    assert history[115] > 1.0 and history[115] < history[139]  # stages climb
    assert history[145] == pytest.approx(5.0, rel=0.01)  # 0.5 / 0.1 = 5 = max_mult
    assert history[-1] == pytest.approx(1.0, rel=0.01)


def test_drift_response_ignores_warmup_downward_and_cooldown() -> None:
    c = DriftResponse(cooldown=1000)
    assert c.propose({"drift": 1.0}, ctx(step=3, warmup=10)) == []
    assert c.propose({"drift": -1.0}, ctx(step=50)) == []


def test_drift_response_never_rewarms_on_a_validation_rise() -> None:
    c = DriftResponse()
    props = []
    for k in range(40):
        val = 1.0 - 0.001 * k + (0.01 * (-1) ** k) + (0.5 if k >= 30 else 0.0)
        props += c.propose({"drift": 0.0, "shift": 0.0},
                           ctx(100 + k, metrics={"val_loss": val}, metrics_step=100 + k))
    assert props == []  # overfitting is not a shift
    # a shift the guard confirms later mentions the validation rise it saw
    props = c.propose({"drift": 0.0, "shift": 1.0, "shift.z": 4.2}, ctx(150))
    assert props and "confirmed by the guard" in props[0].reason
    assert "val_loss shifted up" in props[0].reason


def test_drift_response_ignores_an_unconfirmed_loss_alarm() -> None:
    c = DriftResponse()  # the guard ran its test and found no shift: no re-warm
    assert c.propose({"drift": 1.0, "shift": 0.0}, ctx(step=500)) == []


# -- scale ----------------------------------------------------------------------------------
def test_scale_defaults_follow_fan_in_and_size() -> None:
    d = scale_defaults(124_000_000, "adamw", fan_in=768, total_steps=600_000)
    assert d.lr == pytest.approx(0.5 / 768)  # ≈ GPT-3 small's 6e-4
    assert d.clip_norm == 1.0
    assert d.weight_decay == pytest.approx(min(0.1, 5 / (d.lr * 600_000)))
    small = scale_defaults(10_000, "adam")  # fan-in sqrt(10_000 / 12) ≈ 28.9
    assert small.lr == pytest.approx(0.5 / (10_000 / 12) ** 0.5)
    assert small.clip_norm is None and small.weight_decay == 0.0
    assert scale_defaults(10, "adam").lr == 0.5  # fan-in floored at 1
    assert scale_defaults(10**12, "adam").lr == 1e-4  # clipped below
    assert scale_defaults(10_000, "sgd").lr == 0.05
    with pytest.raises(ValueError, match="optimizer_kind"):
        scale_defaults(10, "lbfgs")
    with pytest.raises(ValueError, match="num_params"):
        scale_defaults(0, "adam")
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Linear(256, 256),
                                torch.nn.Linear(256, 10))
    assert estimate_fan_in(model.parameters()) == 256.0


def test_scale_aware_replaces_an_implausible_lr_once() -> None:
    c = ScaleAware(optimizer_kind="infer", fan_in=100)
    g = [GroupView("g", {"lr": 1.0, "beta2": 0.999}, {"lr": 1.0, "beta2": 0.999}, 5000)]
    props = c.propose({}, ctx(0, groups=g))
    assert len(props) == 1 and props[0].factor == pytest.approx(0.005) and props[0].urgent
    assert c.propose({}, ctx(1, groups=g)) == []
    near = ScaleAware(fan_in=100)
    g = [GroupView("g", {"lr": 3e-3}, {"lr": 3e-3}, 5000)]
    assert near.propose({}, ctx(0, groups=g)) == []  # within 3× of 5e-3: the user's lr stays


def test_lr_range_test_finds_the_valley_and_restores_state() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.123, momentum=0.9)
    x = torch.randn(256, 10)
    y = x @ torch.randn(10, 1)
    before = [p.detach().clone() for p in model.parameters()]
    out = lr_range_test(opt, lambda: (model(x) - y).square().mean(), 1e-4, 10.0, steps=40)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert opt.param_groups[0]["lr"] == 0.123 and not opt.state
    assert 1e-4 <= out["lr"] <= 1.0
    i_min = min(range(len(out["losses"])), key=out["losses"].__getitem__)
    assert out["lr"] == pytest.approx(out["lrs"][i_min] / 10)


# -- resume -----------------------------------------------------------------------------------
def _feed(c, n, start=0):
    out = []
    for i in range(start, start + n):
        sig = {"grad_noise.valid": 1.0, "grad_noise": 2.0 + math.sin(i), "grad_noise.long": 1.0,
               "update_ratio.valid": 1.0, "update_ratio.rel/a": 2.0 + math.cos(i),
               "update_ratio.rel/b": 0.5, "grad_alignment.ema": math.sin(i / 7),
               "loss_trend.mean": 1.0, "drift": 1.0 if i == 5 else 0.0}
        groups = [GroupView(n_, {"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.1},
                            {"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.1}, 10)
                  for n_ in ("a", "b")]
        props = c.propose(sig, ctx(i, groups=groups, metrics={"val_loss": 1 + i / 100},
                                   metrics_step=i))
        out.append([(p.knob, p.group, p.factor, p.value) for p in props])
    return out


@pytest.mark.parametrize("make", [NoiseAdaptiveLR, LayerwiseLR, MomentumControl,
                                  WeightDecayControl, DriftResponse, ScaleAware])
def test_controller_state_round_trip(make) -> None:
    a = make()
    _feed(a, 30)
    b = make()
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert _feed(a, 30, 30) == _feed(b, 30, 30)
