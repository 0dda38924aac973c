"""Bad input: each raises a clear error naming what is wrong."""

from __future__ import annotations

import pytest
import torch

from cadence.regime import Regime


def setup(**kw):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, Regime(opt, preset="constant", **kw)


def test_loss_must_be_a_scalar_tensor_with_grad():
    model, regime = setup()
    out = model(torch.ones(4, 3))
    with pytest.raises(TypeError, match="loss tensor.*got float"):
        regime.step(1.0)
    with pytest.raises(ValueError, match=r"scalar loss, got shape \(4, 1\)"):
        regime.step(out)
    with pytest.raises(ValueError, match="does not require grad"):
        regime.step(out.mean().detach())
    with torch.no_grad():
        loss = model(torch.ones(4, 3)).mean()
    with pytest.raises(ValueError, match="does not require grad"):
        regime.step(loss)


def test_step_without_gradients():
    model, regime = setup()
    loss = model(torch.ones(4, 3)).mean()
    with pytest.raises(RuntimeError, match=r"no gradients: call loss.backward\(\)"):
        regime.step(loss)


def test_optimizer_problems():
    with pytest.raises(ValueError, match="optimizer has no parameters"):
        Regime(torch.optim.SGD([{"params": []}], lr=0.1), preset="constant")
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        Regime(object(), preset="constant")
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(
        [{"params": [model.weight], "name": "a"}, {"params": [model.bias], "name": "a"}], lr=0.1
    )
    with pytest.raises(ValueError, match="two param groups are named 'a'"):
        Regime(opt, preset="constant")


@pytest.mark.parametrize(
    "bounds, err, match",
    [
        ({"lr": (-1.0, 1.0)}, ValueError, "lower bound must be finite and >= 0"),
        ({"lr": (1.0, 0.5)}, ValueError, "needs lo <= hi"),
        ({"speed": (0.0, 1.0)}, ValueError, "unknown knob 'speed'"),
        ({"lr": 0.1}, TypeError, "must be a pair"),
        ({"lr": ("a", 1)}, TypeError, "two numbers"),
        ([("lr", (0, 1))], TypeError, "must be a mapping"),
    ],
)
def test_bad_bounds(bounds, err, match):
    with pytest.raises(err, match=match):
        setup(bounds=bounds)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(accumulation_steps=0), "accumulation_steps must be an int >= 1"),
        (dict(metrics_every=0), "metrics_every must be an int >= 1"),
        (dict(warmup_steps=-1), "warmup_steps must be an int >= 0"),
        (dict(max_change=0.9), "max_change must be a finite number > 1"),
        (dict(smoothing=1.0), r"smoothing must be in \[0, 1\)"),
        (dict(max_lr_spread=0.5), "max_lr_spread must be >= 1"),
        (dict(controllers=["no-such-controller"]), "unknown controller 'no-such-controller'"),
        (dict(signals=["no-such-signal"]), "unknown signal 'no-such-signal'"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        setup(**kw)


def test_objects_not_following_the_protocol():
    with pytest.raises(TypeError, match="not a Controller: subclass cadence.protocol.Controller"):
        setup(controllers=[object()])


def test_observe_checks_values():
    _, regime = setup()
    with pytest.raises(ValueError, match="at least one metric"):
        regime.observe()
    with pytest.raises(TypeError, match="needs a number"):
        regime.observe(val_loss="low")
    with pytest.raises(ValueError, match="needs a scalar"):
        regime.observe(val_loss=torch.ones(2))
    regime.observe(val_loss=torch.tensor(0.25), val_acc=1)
    assert regime.metrics == {"val_loss": 0.25, "val_acc": 1.0}
    with pytest.raises(ValueError, match="unknown group 'x'"):
        regime.values("x")
