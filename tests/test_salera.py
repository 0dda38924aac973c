"""SALeRA: the ALeRA random-walk reference, per-layer rates, and the Page-Hinkley safeguard
(halve the rates and restore the previous weights on a loss jump)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cadence.controllers.salera import SaleraController
from cadence.optim.salera import PageHinkley, SALeRA, alera_reference
from cadence.protocol import CONTROLLERS, Context, GroupView, MeasureContext
from cadence.signals.path import SaleraPath


def test_alera_reference_matches_monte_carlo_including_transient():
    rng = np.random.default_rng(0)
    alpha, n = 0.05, 300
    path = np.zeros((200, n))
    for t in range(1, 61):
        u = rng.normal(size=(200, n))
        path = (1 - alpha) * path + alpha * u / np.linalg.norm(u, axis=1, keepdims=True)
        if t in (1, 10, 60):
            assert np.mean((path**2).sum(1)) == pytest.approx(alera_reference(alpha, t), rel=0.02)


def test_page_hinkley_quiet_on_decreasing_noisy_loss_and_fires_on_jump():
    rng = np.random.default_rng(1)
    ph = PageHinkley(rate=0.1)
    losses = 2.0 * np.exp(-np.arange(300) / 100) + 0.05 * rng.normal(size=300)
    assert not any(ph.update(x) for x in losses)
    fired = [ph.update(x) for x in [5.0] * 5]
    assert any(fired[:3])
    assert PageHinkley().update(float("nan"))
    with pytest.raises(ValueError, match="threshold"):
        PageHinkley(threshold=-1.0)


def test_salera_restores_previous_weights_and_halves_rates_on_injected_jump():
    torch.manual_seed(0)
    w = torch.randn(5, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = SALeRA([{"params": [w]}, {"params": [b]}], lr=0.05, adapt_rate=0.0, ph_rate=0.2)
    target = torch.arange(5.0)

    def loss_fn():
        return ((w - target) ** 2).sum() + (b - 1.0).pow(2).sum()

    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step(loss=loss.item())
    assert opt.alarms == 0
    before_last = [w.detach().clone(), b.detach().clone()]
    opt.zero_grad()
    loss = loss_fn()
    loss.backward()
    opt.step(loss=loss.item())               # a normal step ...
    with torch.no_grad():
        w.add_(100.0)                        # ... then something blows the weights up
    opt.zero_grad()
    loss = loss_fn()
    loss.backward()
    lrs = [g["lr"] for g in opt.param_groups]
    opt.step(loss=loss.item())
    assert opt.alarms == 1
    torch.testing.assert_close(w.detach(), before_last[0], rtol=0, atol=0)
    torch.testing.assert_close(b.detach(), before_last[1], rtol=0, atol=0)
    assert [g["lr"] for g in opt.param_groups] == [lr / 2 for lr in lrs]


def test_salera_rates_are_per_layer():
    a, b = torch.zeros(50, requires_grad=True), torch.zeros(50, requires_grad=True)
    opt = SALeRA([{"params": [a]}, {"params": [b]}], lr=0.01, alpha=0.1, adapt_rate=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        a.grad = torch.ones(50)                       # consistent direction: rate grows
        b.grad = torch.randn(50, generator=gen)       # pure noise: rate stays put
        opt.step()
    lr_a, lr_b = (g["lr"] for g in opt.param_groups)
    assert lr_a > 10 * 0.01
    assert 0.5 * 0.01 < lr_b < 2 * 0.01


def test_salera_state_dict_roundtrip():
    p = torch.zeros(3, requires_grad=True)
    opt = SALeRA([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step(loss=1.0)
    state = opt.state_dict()
    opt2 = SALeRA([torch.zeros(3, requires_grad=True)], lr=1.0)
    opt2.load_state_dict(state)
    assert opt2.detector.state_dict() == opt.detector.state_dict()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_salera_path_zscore_near_zero_on_noise():
    gen = torch.Generator().manual_seed(2)
    p = torch.zeros(400, requires_grad=True)
    signal = SaleraPath(alpha=0.1)
    zs = []
    for t in range(1500):
        p.grad = torch.randn(400, generator=gen)
        ctx = MeasureContext(t, 0.0, {"layer": [p]}, None, 1.0)
        zs.append(signal.measure(ctx)["salera_path/layer"])
    # z is in units of sigma = alpha / sqrt(n); its per-step std here is about 0.7
    assert abs(float(np.mean(zs))) < 0.2


def test_salera_controller_halves_all_rates_urgently_on_jump():
    controller = CONTROLLERS.create("salera", adapt_rate=1e-3, ph_rate=0.5)
    assert isinstance(controller, SaleraController)
    ctx = Context(0, None, [GroupView("a", {}, {}), GroupView("b", {}, {})])
    for t in range(20):
        props = controller.propose({"loss": 1.0 / (t + 1), "salera_path/a": 2.0,
                                    "salera_path/b": -1.0}, ctx)
        assert {p.group: p.factor for p in props} == pytest.approx(
            {"a": math.exp(2e-3), "b": math.exp(-1e-3)})
    props = controller.propose({"loss": 10.0, "salera_path/a": 2.0}, ctx)
    assert len(props) == 1 and props[0].factor == 0.5 and props[0].urgent
    assert props[0].group is None and controller.alarms == 1
