"""Gradient norms, alignment, noise scale, update ratio, loss trend, drift detectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _signal_helpers import make_ctx, run_signal
from cadence.signals.drift import (
    Cusum,
    LossDrift,
    PageHinkley,
    RollingQuadratic,
    quadratic_forecast,
)
from cadence.signals.grads import GradAlignment, GradNorms
from cadence.signals.noise import GradNoise
from cadence.signals.trend import LossTrend
from cadence.signals.update_ratio import UpdateRatio


def _two_group_model() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "name": "body"},
            {"params": model[2].parameters(), "name": "head"},
        ],
        lr=0.1,
    )
    return model, opt


def _backward(model: torch.nn.Module, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 6, generator=gen)
    y = torch.randint(0, 3, (16,), generator=gen)
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return float(loss.detach())


def test_grad_norms_match_torch_and_track_moments() -> None:
    model, opt = _two_group_model()
    sig = GradNorms(beta=0.5)
    norms = []
    for step in range(3):
        _backward(model, step)
        out = run_signal(sig, make_ctx(opt, step))
        ref = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model[2].parameters()]))
        assert out["grad_norms/head"] == pytest.approx(float(ref), rel=1e-5)
        n = sum(p.numel() for p in model[2].parameters())
        assert out["grad_norms.rms/head"] == pytest.approx(float(ref) / math.sqrt(n), rel=1e-5)
        norms.append(float(ref))
    # West's EMA with beta 0.5 started at the first sample: mean = 0.25 n0 + 0.25 n1 + 0.5 n2
    assert out["grad_norms.mean/head"] == pytest.approx(
        0.25 * norms[0] + 0.25 * norms[1] + 0.5 * norms[2], rel=1e-6
    )


def test_grad_alignment_is_the_cosine_between_consecutive_gradients() -> None:
    model, opt = _two_group_model()
    sig = GradAlignment()
    _backward(model, 1)
    g1 = torch.cat([p.grad.flatten().clone() for p in model.parameters()])
    first = run_signal(sig, make_ctx(opt))
    assert first["grad_alignment.valid"] == 0.0
    _backward(model, 2)
    g2 = torch.cat([p.grad.flatten() for p in model.parameters()])
    out = run_signal(sig, make_ctx(opt, 1))
    ref = torch.nn.functional.cosine_similarity(g1, g2, dim=0)
    assert out["grad_alignment"] == pytest.approx(float(ref), abs=1e-5)
    assert out["grad_alignment.ema"] == pytest.approx(float(ref), abs=1e-5)  # bias-corrected


def _noisy_quadratic_grads(opt, p, mean, sigma, steps, gen) -> None:
    for _ in range(steps):
        p.grad = mean + sigma * torch.randn(mean.shape, generator=gen)
        opt.step()


@pytest.mark.parametrize("kind", ["adam", "sgd_momentum"])
def test_grad_noise_from_optimizer_moments_matches_closed_form(kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    d, sigma = 4000, 0.5
    mean = torch.randn(d, generator=gen) * 0.2
    p = torch.nn.Parameter(torch.zeros(d))
    if kind == "adam":
        opt = torch.optim.Adam([p], lr=0.0, betas=(0.9, 0.99))
    else:
        opt = torch.optim.SGD([p], lr=0.0, momentum=0.9)
    sig = GradNoise(every=1, beta=0.98)
    _noisy_quadratic_grads(opt, p, mean, sigma, 300, gen)
    for step in range(400):
        p.grad = mean + sigma * torch.randn(d, generator=gen)
        out = run_signal(sig, make_ctx(opt, step))
        opt.step()
    expected = d * sigma**2 / float(mean.square().sum())  # tr(Σ_B) / |G|²
    assert out["grad_noise.valid"] == 1.0
    assert out["grad_noise"] == pytest.approx(expected, rel=0.15)
    assert out["grad_noise/group0"] == pytest.approx(out["grad_noise"], rel=1e-6)
    assert out["grad_noise.ratio"] == pytest.approx(1.0, rel=0.2)


def test_grad_noise_from_micro_batches_is_unbiased() -> None:
    gen = torch.Generator().manual_seed(1)
    d, k, sigma = 50, 4, 1.0  # per-micro-batch gradient noise std sigma
    mean = torch.full((d,), 0.3)
    sig = GradNoise(every=1)
    p = torch.nn.Parameter(torch.zeros(d))
    opt = torch.optim.SGD([p], lr=0.0)
    tr_sum = sq_sum = 0.0
    for step in range(2000):
        micro = [(mean + sigma * torch.randn(d, generator=gen)) / k for _ in range(k)]
        total = torch.stack(micro).sum(0)
        p.grad = total
        raw = sig.measure(make_ctx(opt, step, micro_grad_norms=[float(c.norm()) for c in micro],
                                   grad_norm=float(total.norm())))
        tr_sum += raw["grad_noise.tr"]
        sq_sum += raw["grad_noise.sq"]
    # accumulated gradient = mean of k micro gradients: tr(Σ_B) = d σ² / k
    assert tr_sum / 2000 == pytest.approx(d * sigma**2 / k, rel=0.05)
    assert sq_sum / 2000 == pytest.approx(float(mean.square().sum()), rel=0.1)


def test_grad_noise_without_moments_reports_invalid() -> None:
    model, opt = _two_group_model()  # plain SGD, no momentum
    _backward(model, 0)
    out = run_signal(GradNoise(), make_ctx(opt))
    assert out["grad_noise.valid"] == 0.0
    assert all(math.isfinite(v) for v in out.values())


def test_update_ratio_of_an_sgd_step() -> None:
    model, opt = _two_group_model()
    sig = UpdateRatio(every=1)
    _backward(model, 0)
    head = [p.detach().clone() for p in model[2].parameters()]
    grads = [p.grad.clone() for p in model[2].parameters()]
    first = run_signal(sig, make_ctx(opt))
    assert first["update_ratio.valid"] == 0.0
    opt.step()
    sig.after_step(make_ctx(opt))
    out = run_signal(sig, make_ctx(opt, 1))
    du = 0.1 * torch.cat([g.flatten() for g in grads]).norm()
    w = torch.cat([h.flatten() for h in head]).norm()
    assert out["update_ratio/head"] == pytest.approx(float(du / w), rel=1e-5)
    assert out["update_ratio.valid"] == 1.0
    median = (out["update_ratio/head"] + out["update_ratio/body"]) / 2  # median of two
    assert out["update_ratio.rel/head"] == pytest.approx(out["update_ratio/head"] / median)


def test_loss_trend_slope_matches_numpy_and_plateau_has_hysteresis() -> None:
    rng = np.random.default_rng(0)
    sig = LossTrend(window=50, patience=10)
    losses = [5.0 - 0.01 * t + 0.01 * rng.standard_normal() for t in range(80)]
    for t, loss in enumerate(losses):
        out = sig.update({"loss_trend.loss": loss, "loss_trend.step": float(t)})
    ref = np.polyfit(np.arange(30, 80), np.array(losses[30:]), 1)[0]
    assert out["loss_trend.slope"] == pytest.approx(ref, rel=1e-9)
    assert out["loss_trend.tstat"] < -50
    assert out["loss_trend.plateau"] == 0.0
    flags = []
    for t in range(80, 300):  # flat with noise: plateau after window + patience
        loss = 4.2 + 0.01 * rng.standard_normal()
        flags.append(sig.update({"loss_trend.loss": loss, "loss_trend.step": float(t)})[
            "loss_trend.plateau"])
    assert flags[-1] == 1.0
    assert sum(abs(a - b) for a, b in zip(flags, flags[1:], strict=False)) == 1  # one switch
    for t in range(300, 360):  # falling again: plateau released
        out = sig.update({"loss_trend.loss": 4.2 - 0.02 * (t - 300), "loss_trend.step": float(t)})
    assert out["loss_trend.plateau"] == 0.0


def test_loss_trend_flags_a_spike_without_poisoning_the_baseline() -> None:
    rng = np.random.default_rng(1)
    sig = LossTrend(window=20)
    for t in range(100):
        sig.update({"loss_trend.loss": 2.0 + 0.05 * rng.standard_normal(),
                    "loss_trend.step": float(t)})
    out = sig.update({"loss_trend.loss": 50.0, "loss_trend.step": 100.0})
    assert out["loss_trend.spike_z"] > 6
    out = sig.update({"loss_trend.loss": 2.0, "loss_trend.step": 101.0})
    assert abs(out["loss_trend.spike_z"]) < 6  # the baseline did not absorb the spike


def test_cusum_and_page_hinkley_detect_a_mean_shift_and_stay_quiet_before() -> None:
    rng = np.random.default_rng(2)
    stream = np.concatenate([rng.standard_normal(300), 2.0 + rng.standard_normal(100)])
    for det in (Cusum(), PageHinkley()):
        alarms = [(i, det.update(float(x))) for i, x in enumerate(stream)]
        fired = [i for i, a in alarms if a]
        assert fired, type(det).__name__
        assert fired[0] >= 300 and fired[0] < 330
        assert alarms[fired[0]][1] == 1
    det = Cusum()
    falls = [det.update(float(x)) for x in -2.0 + rng.standard_normal(60)]
    assert -1 in falls


def test_loss_drift_fires_on_a_persistent_jump_not_on_the_decay() -> None:
    rng = np.random.default_rng(3)
    sig = LossDrift()
    alarms, outs = [], []
    for t in range(600):
        loss = 1.0 + 2.0 * math.exp(-t / 100) + 0.02 * rng.standard_normal()
        if t >= 400:
            loss += 0.5  # the data changed
        outs.append(sig.update(sig.measure(type("C", (), {"loss": loss})())))
        alarms.append(outs[-1]["drift"])
    fired = [t for t, a in enumerate(alarms) if a]
    assert fired and 400 <= fired[0] < 420 and alarms[fired[0]] == 1.0
    # the alarm reports the statistic that crossed its threshold, not the re-armed zero
    at = outs[fired[0]]
    assert at["drift.cusum"] >= 7.0 or at["drift.ph"] >= 10.0
    assert not [t for t in fired if t < 400]


def test_loss_drift_ignores_a_single_spike() -> None:
    rng = np.random.default_rng(4)
    sig = LossDrift()
    fired = []
    for t in range(300):
        loss = 1.0 + 0.02 * rng.standard_normal() + (30.0 if t == 200 else 0.0)
        fired.append(sig.update({"drift.loss": loss})["drift"])
    assert not any(fired)


def test_cosine_table_is_invalid_when_a_norm_overflows() -> None:
    from cadence.signals._stats import cosine_table

    ok = cosine_table("c", ["a", "b"], [(1.0, 1.0, 4.0), (0.0, 1.0, 1.0)])
    assert ok == {"c/a": 0.5, "c/b": 0.0, "c": pytest.approx(1 / math.sqrt(10)), "c.valid": 1.0}
    inf = cosine_table("c", ["a"], [(1.0, math.inf, 1.0)])
    assert inf["c.valid"] == 0.0 and inf["c"] == 0.0
    assert cosine_table("c", ["a"], [(0.0, 0.0, 1.0)])["c.valid"] == 0.0


@pytest.mark.parametrize("kind", ["noisy", "decay", "flat-large", "exact-quadratic", "tiny"])
def test_rolling_quadratic_forecasts_as_the_least_squares_fit(kind: str) -> None:
    """The O(1) running-sum fit agrees with the full least-squares fit over the window, on
    noisy, decaying, nearly constant and exactly quadratic streams (where the residual is
    rounding noise: both stay under LossDrift's 1e-12 relative floor)."""
    rng = np.random.default_rng(0)
    n = 50
    fit, window = RollingQuadratic(n), []
    for t in range(600):
        y = {"noisy": 2.0 + 0.01 * rng.standard_normal(),
             "decay": 10 * math.exp(-t / 100) + 1e-3 * rng.standard_normal(),
             "flat-large": 1000.0 + 1e-6 * rng.standard_normal(),
             "exact-quadratic": 1000.0 + 1e-7 * t * t,
             "tiny": 1e-6 * (1 + 1 / (t + 1))}[kind]
        fit.push(y)
        window = [*window, y][-n:]
        if len(window) < n:
            continue
        want, want_se = quadratic_forecast(np.asarray(window))
        got, got_se = fit.forecast()
        assert got == pytest.approx(want, rel=1e-9, abs=1e-15)
        floor = 1e-12 * max(abs(want), 1.0)
        assert abs(got_se - want_se) <= max(1e-6 * want_se, floor)


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=130), st.integers(10, 40))
@settings(max_examples=60, deadline=None)
def test_rolling_quadratic_state_round_trip_is_exact(values: list[float], n: int) -> None:
    a, b = RollingQuadratic(n), RollingQuadratic(n)
    for y in values:
        a.push(y)
    b.load_state_dict(a.state_dict())
    for y in (1.0, 2.5, -3.0):
        a.push(y)
        b.push(y)
    assert list(a.values) == list(b.values)
    if len(a.values) == n:
        assert a.forecast() == b.forecast()


def test_rolling_quadratic_refuses_too_few_points() -> None:
    with pytest.raises(ValueError, match="n must be an int >= 4"):
        RollingQuadratic(3)
    fit = RollingQuadratic(10)
    for y in range(9):
        fit.push(float(y))
    with pytest.raises(ValueError, match="needs 10 values, has 9"):
        fit.forecast()
