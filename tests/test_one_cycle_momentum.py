"""One-cycle with momentum cycling: cadence's schedule + ``one_cycle_momentum`` controller
against torch's ``OneCycleLR`` (lr and momentum/β1, update by update)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import cadence
from cadence.controllers.momentum import OneCycleMomentum
from cadence.protocol import CONTROLLERS
from cadence.schedules import OneCycle, one_cycle


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def _record(opt: torch.optim.Optimizer) -> list[tuple[float, float]]:
    """(lr, momentum or β1) of the first group at every ``opt.step()``, before it runs."""
    seen: list[tuple[float, float]] = []

    def hook(o: torch.optim.Optimizer, *_: object) -> None:
        g = o.param_groups[0]
        seen.append((float(g["lr"]), float(g["momentum"] if "momentum" in g else g["betas"][0])))

    opt.register_step_pre_hook(hook)
    return seen


def _loss(model: nn.Module, t: int) -> torch.Tensor:
    x = torch.linspace(-1, 1, 12).reshape(4, 3) + 0.01 * t
    return (model(x) ** 2).mean()


def _torch_run(make_opt, total: int, **kw) -> list[tuple[float, float]]:
    model = _model()
    opt = make_opt(model.parameters())
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"],
                                                total_steps=total, **kw)
    seen = _record(opt)
    for t in range(total):
        _loss(model, t).backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    return seen


def _cadence_run(make_opt, total: int, three_phase: bool = False,
                 anneal: str = "cos") -> list[tuple[float, float]]:
    model = _model()
    opt = make_opt(model.parameters())
    schedule = OneCycle(total, anneal_strategy=anneal, three_phase=three_phase)
    regime = cadence.Regime(opt, total_steps=total, preset="constant", schedule=schedule,
                            controllers=[OneCycleMomentum.for_schedule(schedule)], guard=False)
    seen = _record(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(total):
            loss = _loss(model, t)
            loss.backward()
            assert regime.step(loss)
    return seen


def adamw(ps):
    return torch.optim.AdamW(ps, lr=1e-2, betas=(0.95, 0.999))


def sgd(ps):
    return torch.optim.SGD(ps, lr=0.1, momentum=0.95)


@pytest.mark.parametrize("make_opt", [adamw, sgd], ids=["adamw-beta1", "sgd-momentum"])
@pytest.mark.parametrize("three_phase,anneal", [(False, "cos"), (True, "linear")])
def test_one_cycle_lr_and_momentum_match_torch_step_by_step(make_opt, three_phase, anneal):
    total = 120
    ref = _torch_run(make_opt, total, three_phase=three_phase, anneal_strategy=anneal)
    got = _cadence_run(make_opt, total, three_phase=three_phase, anneal=anneal)
    assert len(got) == len(ref) == total
    for t, ((lr, m), (lr_ref, m_ref)) in enumerate(zip(got, ref, strict=True)):
        assert lr == pytest.approx(lr_ref, rel=1e-9, abs=1e-15), t
        assert m == pytest.approx(m_ref, rel=1e-9), t
    moms = [m for _, m in got]
    assert min(moms) == pytest.approx(0.85, abs=1e-3) and moms[0] == pytest.approx(0.95)


def test_momentum_cycle_is_inverse_to_the_lr_and_a_registered_controller() -> None:
    sched = one_cycle(total_steps=100)
    ctrl = CONTROLLERS.create("one_cycle_momentum", total_steps=100)
    peak = max(range(100), key=sched)
    assert ctrl.momentum_at(0) == pytest.approx(0.95)
    assert ctrl.momentum_at(peak) == pytest.approx(0.85)
    assert ctrl.momentum_at(99) == pytest.approx(0.95)
    for t in range(1, 100):  # lr up ⇔ momentum down
        d_lr, d_m = sched(t) - sched(t - 1), ctrl.momentum_at(t) - ctrl.momentum_at(t - 1)
        assert d_lr * d_m <= 0
    assert type(ctrl)(**ctrl.get_config()).momentum_at(37) == ctrl.momentum_at(37)
    with pytest.raises(ValueError, match="base_momentum"):
        OneCycleMomentum(100, base_momentum=0.99, max_momentum=0.9)
    follows = CONTROLLERS.create("one_cycle_momentum")  # total_steps from the Regime
    with pytest.raises(ValueError, match="total_steps"):
        follows.momentum_at(0)
    assert follows.cycle(100) == sched and follows.momentum_at(peak) == pytest.approx(0.85)
    with pytest.raises(TypeError, match="OneCycle"):
        OneCycleMomentum.for_schedule(cadence.schedules.Constant())  # type: ignore[arg-type]


def test_plain_sgd_without_momentum_is_left_alone() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    regime = cadence.Regime(opt, total_steps=20, preset="constant", schedule=OneCycle(20),
                            controllers=["one_cycle_momentum"])
    for t in range(5):
        loss = _loss(model, t)
        loss.backward()
        regime.step(loss)
    assert opt.param_groups[0]["momentum"] == 0.0
    assert not [e for e in regime.events if e.knob == "momentum"]
