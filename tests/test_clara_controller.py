"""CLARA in controller form over plain torch optimizers, driven by a minimal stand-in for the
Regime's measure → propose → apply → step loop (no clamps), compared with the drop-in
ClaraSGD / ClaraAdam, which apply the same rule inside step()."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from cadence.controllers.clara import ClaraController
from cadence.optim import ClaraAdam, ClaraSGD
from cadence.protocol import CONTROLLERS, SIGNALS, Context, GroupView, MeasureContext
from cadence.signals.path import ClaraPath, optimizer_beta


def _named(opt):
    return {f"group{i}": [p for p in g["params"] if p.requires_grad]
            for i, g in enumerate(opt.param_groups)}


def _context(opt, step):
    views = [GroupView(name=f"group{i}", values={"lr": g["lr"]}, base={"lr": g["lr"]})
             for i, g in enumerate(opt.param_groups)]
    return Context(step=step, total_steps=None, groups=views)


def drive_step(opt, signal, controller, step, loss=0.0):
    """What a Regime does around one optimizer step, without clamps or smoothing."""
    ctx = MeasureContext(step=step, loss=loss, params_by_group=_named(opt), optimizer=opt,
                         grad_norm=1.0)
    values = signal.update(signal.measure(ctx))
    proposals = controller.propose(values, _context(opt, step))
    for prop in proposals:
        for i, group in enumerate(opt.param_groups):
            if prop.group in (None, f"group{i}"):
                group["lr"] *= prop.factor
    opt.step()
    return values, proposals


def _regression(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 6, generator=gen, dtype=torch.float64) * 0.1
    b = torch.zeros(3, dtype=torch.float64)

    def loss_fn(params, t):
        idx = torch.arange(16) + 16 * (t % 4)
        return ((x[idx] @ params[0].T + params[1] - y[idx]) ** 2).mean()

    return [w, b], loss_fn


@pytest.mark.parametrize(
    "make_torch,make_clara",
    [
        (lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
         lambda ps: ClaraSGD(ps, lr=0.05, momentum=0.9, damping=0.02)),
        (lambda ps: torch.optim.SGD(ps, lr=0.05),
         lambda ps: ClaraSGD(ps, lr=0.05, damping=0.02)),
        (lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99)),
         lambda ps: ClaraAdam(ps, lr=0.01, betas=(0.8, 0.99), damping=0.02)),
    ],
)
def test_controller_over_torch_optimizer_matches_drop_in(make_torch, make_clara):
    init, loss_fn = _regression()
    pa = [t.clone().requires_grad_(True) for t in init]
    pb = [t.clone().requires_grad_(True) for t in init]
    opt_a, opt_b = make_torch(pa), make_clara(pb)
    signal, controller = ClaraPath(c=0.2), ClaraController(damping=0.02)
    for t in range(40):
        for ps, opt in ((pa, opt_a), (pb, opt_b)):
            opt.zero_grad()
            loss_fn(ps, t).backward()
        drive_step(opt_a, signal, controller, t)
        used_b = opt_b.param_groups[0]["lr"]  # the drop-in adapts after its step, the
        opt_b.step()                          # controller before the next one: same lr used
        assert opt_a.param_groups[0]["lr"] == pytest.approx(used_b, rel=1e-9)
    for a, b in zip(pa, pb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    assert opt_a.param_groups[0]["lr"] != pytest.approx(opt_b.defaults["lr"], rel=1e-3)


def test_beta_is_read_from_the_optimizer():
    p = torch.zeros(1, requires_grad=True)
    assert optimizer_beta(torch.optim.Adam([p], betas=(0.7, 0.9)).param_groups[0]) == 0.7
    assert optimizer_beta(torch.optim.SGD([p], lr=0.1, momentum=0.5).param_groups[0]) == 0.5
    assert optimizer_beta(torch.optim.Adagrad([p]).param_groups[0]) == 0.0


def test_pure_noise_ratio_near_one_with_adam_and_biased_without_correction():
    def mean_ratio(beta):
        gen = torch.Generator().manual_seed(3)
        p = torch.zeros(3000, requires_grad=True)
        opt = torch.optim.Adam([p], lr=1e-3)
        signal = ClaraPath(beta=beta)
        ratios = []
        for t in range(400):
            p.grad = torch.randn(3000, generator=gen)
            values = signal.measure(MeasureContext(t, 0.0, {"group0": [p]}, opt, 1.0))
            if t > 100:
                ratios.append(values["clara_path"])
            opt.step()
        return sum(ratios) / len(ratios)

    assert mean_ratio(None) == pytest.approx(1.0, abs=0.03)  # auto: beta1 = 0.9
    assert mean_ratio(0.0) == pytest.approx(6.14, rel=0.04)  # the 2017 (inconsistent) reference


def test_no_update_gives_no_proposal():
    p = torch.ones(4, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    signal, controller = ClaraPath(), ClaraController(damping=0.1)
    p.grad = torch.ones(4)
    values, props = drive_step(opt, signal, controller, 0)
    assert values["clara_path.valid"] == 0.0 and props == []  # first step: nothing to compare
    p.grad = torch.zeros(4)  # a step that does not move the parameters (e.g. skipped)
    values, props = drive_step(opt, signal, controller, 1)
    assert values["clara_path.valid"] == 1.0 and len(props) == 1
    values, props = drive_step(opt, signal, controller, 2)
    assert values["clara_path.valid"] == 0.0 and props == []


def test_per_group_factors_follow_each_groups_ratio():
    a, b = torch.zeros(20, requires_grad=True), torch.zeros(20, requires_grad=True)
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    signal, controller = ClaraPath(), ClaraController(damping=0.05, per_group=True)
    g = torch.linspace(-1, 1, 20)
    for t in range(30):
        a.grad = g.clone()                              # aligned
        b.grad = g.clone() if t % 2 else -g.clone()     # alternating
        drive_step(opt, signal, controller, t)
    lr_a, lr_b = (grp["lr"] for grp in opt.param_groups)
    assert lr_a > 0.1 * math.exp(0.05 * 3 * 20) and lr_b < 0.1 * math.exp(-0.05 * 0.8 * 20)


def test_signal_state_dict_resume_is_exact():
    init, loss_fn = _regression(1)

    def run(ps, opt, signal, controller, steps, start):
        for t in range(start, start + steps):
            opt.zero_grad()
            loss_fn(ps, t).backward()
            drive_step(opt, signal, controller, t)

    ps = [t.clone().requires_grad_(True) for t in init]
    opt = torch.optim.SGD(ps, lr=0.05, momentum=0.9)
    signal, controller = ClaraPath(), ClaraController(damping=0.05)
    run(ps, opt, signal, controller, 10, 0)
    saved = copy.deepcopy((signal.state_dict(), opt.state_dict(), [p.detach() for p in ps]))
    run(ps, opt, signal, controller, 10, 10)

    qs = [t.clone().requires_grad_(True) for t in saved[2]]
    opt2 = torch.optim.SGD(qs, lr=1.0, momentum=0.9)
    opt2.load_state_dict(saved[1])
    signal2 = ClaraPath()
    signal2.load_state_dict(saved[0])
    run(qs, opt2, signal2, ClaraController(damping=0.05), 10, 10)
    for a, b in zip(ps, qs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_registered_by_name_and_validated():
    assert isinstance(CONTROLLERS.create("clara"), ClaraController)
    assert isinstance(SIGNALS.create("clara_path", c=0.1), ClaraPath)
    assert ClaraController(c=0.1).signal_options == {"clara_path": {"c": 0.1, "beta": None}}
    with pytest.raises(ValueError, match="damping"):
        ClaraController(damping=-1.0)
    with pytest.raises(ValueError, match="c must"):
        ClaraPath(c=0.0)
    with pytest.raises(ValueError, match="beta"):
        ClaraController(beta=1.0)
