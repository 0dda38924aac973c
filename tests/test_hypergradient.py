"""Hypergradient controller (multiplicative SGD-HD / Adam-HD) against the update written out
by hand, and its safety: the rate never turns negative or non-finite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cadence.controllers.hypergradient import HypergradientController, multiplicative_factor
from cadence.protocol import CONTROLLERS, Context, GroupView, MeasureContext
from cadence.signals.path import UpdateAlignment


def drive_step(opt, signal, controller, step):
    """Measure → propose → apply (no clamps) → step, as the Regime does."""
    named = {f"group{i}": list(g["params"]) for i, g in enumerate(opt.param_groups)}
    values = signal.update(signal.measure(MeasureContext(step, 0.0, named, opt, 1.0)))
    views = [GroupView(name, {"lr": g["lr"]}, {"lr": g["lr"]})
             for name, g in zip(named, opt.param_groups, strict=True)]
    for prop in controller.propose(values, Context(step, None, views)):
        for name, group in zip(named, opt.param_groups, strict=True):
            if prop.group in (None, name):
                group["lr"] *= prop.factor
    opt.step()
    return values


A = np.diag([3.0, 1.0, 0.2, 5.0])
B = np.array([1.0, -2.0, 0.5, 0.3])


def _grad(x, t):
    return A @ x - B + 0.1 * np.sin(np.arange(4) + t)  # a deterministic "noisy" quadratic


def _cos(a, b):
    return float(a @ b / math.sqrt((a @ a) * (b @ b)))


def test_sgd_hd_matches_hand_written_update():
    beta, lr0, steps = 0.1, 0.01, 40
    # hand-written multiplicative SGD-HD: a_t = a_{t-1} (1 + beta cos(g_t, g_{t-1}))
    x, lr, prev = np.ones(4), lr0, None
    lrs_hand = []
    for t in range(steps):
        g = _grad(x, t)
        if prev is not None:
            lr = lr * (1 + beta * _cos(g, prev))
        x = x - lr * g
        prev = g
        lrs_hand.append(lr)

    p = torch.ones(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr0)
    signal, controller = UpdateAlignment(), HypergradientController(hyper_lr=beta)
    lrs = []
    for t in range(steps):
        p.grad = torch.from_numpy(_grad(p.detach().numpy().copy(), t))
        drive_step(opt, signal, controller, t)
        lrs.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, lrs_hand, rtol=1e-10)
    np.testing.assert_allclose(p.detach().numpy(), x, rtol=1e-10)
    assert lrs[-1] > 2 * lr0  # consistent descent on this quadratic: the rate grew


def test_adam_hd_matches_hand_written_update():
    beta, lr0, steps, (b1, b2), eps = 0.05, 0.05, 30, (0.9, 0.999), 1e-8
    x, lr, m, v, prev_dir = np.ones(4), lr0, np.zeros(4), np.zeros(4), None
    lrs_hand = []
    for t in range(1, steps + 1):
        g = _grad(x, t)
        if prev_dir is not None:  # gradient against Adam's previous direction
            lr = lr * (1 + beta * _cos(g, prev_dir))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        direction = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        x = x - lr * direction
        prev_dir = direction
        lrs_hand.append(lr)

    p = torch.ones(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=lr0, betas=(b1, b2), eps=eps)
    signal, controller = UpdateAlignment(), HypergradientController(hyper_lr=beta)
    lrs = []
    for t in range(1, steps + 1):
        p.grad = torch.from_numpy(_grad(p.detach().numpy().copy(), t))
        drive_step(opt, signal, controller, t)
        lrs.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, lrs_hand, rtol=1e-9)
    np.testing.assert_allclose(p.detach().numpy(), x, rtol=1e-9)


def test_aligned_gradients_grow_and_alternating_shrink_but_stay_positive():
    p = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    signal, controller = UpdateAlignment(), HypergradientController(hyper_lr=0.5)
    for t in range(10):
        p.grad = torch.tensor([1.0, 2.0, 3.0])
        drive_step(opt, signal, controller, t)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.5**9, rel=1e-5)
    for t in range(200):
        p.grad = torch.tensor([1.0, 2.0, 3.0]) * (-1) ** t
        drive_step(opt, signal, controller, 10 + t)
        lr = opt.param_groups[0]["lr"]
        assert lr > 0 and math.isfinite(lr)
    assert lr < 1e-4  # (later steps fall below float32 resolution: no update, no change)


@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(0.0, 0.999))
def test_factor_always_positive_and_finite(cosine, hyper_lr):
    f = multiplicative_factor(cosine, hyper_lr)
    assert math.isfinite(f) and f >= 1 - hyper_lr > 0 and f <= 1 + hyper_lr


def test_non_finite_gradient_gives_no_proposal():
    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    signal, controller = UpdateAlignment(), HypergradientController()
    p.grad = torch.ones(2)
    drive_step(opt, signal, controller, 0)
    p.grad = torch.tensor([float("nan"), 1.0])
    values = signal.measure(MeasureContext(1, 0.0, {"group0": [p]}, opt, float("nan")))
    assert values["update_alignment.valid"] == 0.0
    assert controller.propose(values, Context(1, None, [])) == []


def test_per_group_and_registry():
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    signal = UpdateAlignment()
    controller = CONTROLLERS.create("hypergradient", hyper_lr=0.2, per_group=True)
    for t in range(5):
        a.grad = torch.ones(3)
        b.grad = torch.ones(3) * (-1) ** t
        drive_step(opt, signal, controller, t)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 1.2**4)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * 0.8**4)
    with pytest.raises(ValueError, match="hyper_lr"):
        HypergradientController(hyper_lr=1.0)
