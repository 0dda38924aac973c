"""CLARA, hypergradient and SALeRA controllers inside a real ``cadence.Regime`` on a tiny
training problem (signals passed explicitly, or created from `requires`)."""

from __future__ import annotations

import math

import pytest
import torch

import cadence
from cadence.controllers.clara import ClaraController
from cadence.controllers.hypergradient import HypergradientController
from cadence.controllers.salera import SaleraController
from cadence.signals.path import ClaraPath, SaleraPath, UpdateAlignment


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=gen)
    y = torch.tanh(x @ torch.randn(10, 1, generator=gen)) + 0.05 * torch.randn(256, 1,
                                                                               generator=gen)
    return x, y


def _train(make_opt, steps=150, controllers=(), signals=()):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = make_opt(model.parameters())
    regime = cadence.Regime(opt, total_steps=steps, preset="constant",
                            controllers=list(controllers), signals=list(signals))
    x, y = _data()
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        loss.backward()
        regime.step(loss)
        losses.append(loss.item())
    return regime, opt, sum(losses[-16:]) / 16


def test_clara_raises_a_too_small_adam_lr_through_the_regime():
    adam = lambda ps: torch.optim.Adam(ps, lr=1e-4)  # noqa: E731
    _, _, plain = _train(adam)
    regime, opt, adapted = _train(adam, controllers=[ClaraController(damping=0.1)],
                                  signals=[ClaraPath()])
    assert opt.param_groups[0]["lr"] > 3e-4
    assert adapted < 0.7 * plain
    assert any(e.source == "clara" for e in regime.events)
    assert "clara_path" in regime.signals


def test_clara_lowers_a_too_large_sgd_lr_without_diverging():
    sgd = lambda ps: torch.optim.SGD(ps, lr=3.0, momentum=0.9)  # noqa: E731
    with pytest.raises(cadence.regime.GuardError):  # the guard alone cannot save this run
        _train(sgd, signals=[ClaraPath()])
    regime, opt, final = _train(sgd, controllers=[ClaraController(damping=0.1)],
                                signals=[ClaraPath()])
    assert opt.param_groups[0]["lr"] < 1.0
    assert math.isfinite(final) and final < 0.5


@pytest.mark.parametrize(
    "controller,signal",
    [(HypergradientController(hyper_lr=0.05), UpdateAlignment()),
     (SaleraController(adapt_rate=1e-3), SaleraPath(alpha=0.1))],
)
def test_other_path_controllers_run_in_the_regime(controller, signal):
    regime, opt, final = _train(lambda ps: torch.optim.SGD(ps, lr=0.01), steps=60,
                                controllers=[controller], signals=[signal])
    lr = opt.param_groups[0]["lr"]
    assert math.isfinite(final) and lr > 0 and math.isfinite(lr)
    assert any(e.source == controller.name for e in regime.events)


def test_regime_creates_the_signals_a_controller_requires_with_its_options():
    regime, _, _ = _train(lambda ps: torch.optim.Adam(ps, lr=1e-3), steps=5,
                          controllers=[ClaraController(c=0.5), SaleraController(alpha=0.3)])
    by_name = {s.name: s for s in regime.signal_objs}
    assert by_name["clara_path"].c == 0.5
    assert by_name["salera_path"].alpha == 0.3
    assert [s.name for s in regime.signal_objs].count("clara_path") == 1


@pytest.mark.parametrize(("preset", "signal"),
                         [("clara", "clara_path"), ("hypergradient", "update_alignment")])
def test_adaptive_presets_raise_a_small_lr_with_no_signal_given(preset, signal):
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    regime = cadence.Regime(opt, preset=preset)
    x, y = _data()
    for _ in range(50):
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        regime.step(loss)
    assert signal in regime.signals  # created from the controller's requires
    assert opt.param_groups[0]["lr"] > 1e-4  # a full batch on a convex loss: steps align
    assert regime.events and all(e.source == preset for e in regime.events)
