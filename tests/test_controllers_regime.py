"""The adaptive controllers and signals inside a real cadence.Regime on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

import cadence


def _data(seed: int, shift: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 6, generator=g)
    w = torch.arange(6.0).unsqueeze(1) / 6
    y = x @ (w if not shift else w - 0.5)
    return x, y


def test_adaptive_controllers_run_inside_the_regime_and_explain_changes() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "name": "body", "weight_decay": 1e-3},
         {"params": model[2].parameters(), "name": "head", "weight_decay": 1e-3}],
        lr=0.05, momentum=0.9,
    )
    names = ["noise_lr", "layerwise", "momentum", "weight_decay", "drift_response"]
    regime = cadence.Regime(
        opt, total_steps=200, preset="constant", controllers=names,
        signals=["grad_noise", "update_ratio", "grad_alignment", "loss_trend", "drift"],
        guard=False,  # a task switch looks like a loss spike to the guard; this tests the rules
    )
    for step in range(200):
        x, y = _data(step, shift=step >= 120)  # the task changes at step 120
        loss = (model(x) - y).square().mean()
        loss.backward()
        regime.step(loss)
        if step % 20 == 19:
            regime.observe(val_loss=float(loss.detach()))
    assert all(math.isfinite(float(p.detach().abs().sum())) for p in model.parameters())
    events = [e for e in regime.events if e.source in names]
    assert events, "no adaptive controller acted in 200 steps"
    assert all(e.reason for e in events)
    drift = [e for e in regime.events if "drift_response" in (e.source or "")]
    assert drift and drift[0].step >= 120 and drift[0].reason.startswith("drift:")
    assert {e.kind for e in drift} == {"drift"}  # drift changes stand out in the dashboard
    for g in opt.param_groups:
        assert 0.0 < g["lr"] <= 0.5 and 0.0 <= g["momentum"] < 1.0
    state = regime.state_dict()
    assert state  # controllers and signals serialise through the Regime


@pytest.mark.parametrize("lr", [1e-5, 1e-3, 1.0])
def test_auto_preset_replaces_an_implausible_initial_lr(lr: float) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    regime = cadence.Regime(opt, total_steps=60)  # preset "auto"
    first = None
    for step in range(60):
        x, y = _data(step)
        loss = (model(x) - y).square().mean()
        if first is None:
            first = float(loss.detach())
        loss.backward()
        regime.step(loss)
    scale = [e for e in regime.events if e.source == "scale"]
    if lr != 1e-3:
        assert scale and scale[0].step == 0 and "scale-aware" in scale[0].reason
        # the scale-aware lr is reached in one go, whatever the default relative range
        target = next(c for c in regime.controllers if c.name == "scale").defaults.lr
        assert lr * regime.knobs.multiplier("group0") == pytest.approx(target)
        assert target == pytest.approx(0.5 / (129 / 12) ** 0.5)  # 129 parameters
    assert float(loss.detach()) < first
