"""Conformance of cadence.schedules against torch.optim.lr_scheduler (and Hugging Face).

Each case drives torch's own scheduler on a two-group SGD optimizer and compares the
learning rate of every group at every step with (a) our closed form ``base_lr * s(t)`` and
(b) our ``to_torch`` adapter, to a relative error of 1e-9. torch 2.13 steps most classes
with its *recursive* (chainable) form, which multiplies per-step ratios; over the few
dozen steps used here its rounding drift stays many orders of magnitude below 1e-9, so no
case needs a looser tolerance. Where our convention deliberately differs from torch
(cosine clamps at its floor after ``T_max``; one-cycle holds its minimum after
``total_steps``) only the steps torch defines the same way are compared.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import pytest
import torch
from torch.optim import lr_scheduler as L

from cadence import schedules as S

LRS = (0.05, 0.5)  # the two groups' base rates, as in torch's own test fixture
REL = 1e-9


def make_optimizer(lrs=LRS, **kwargs) -> torch.optim.Optimizer:
    groups = [
        {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr, "name": f"g{i}"}
        for i, lr in enumerate(lrs)
    ]
    return torch.optim.SGD(groups, **kwargs)


def drive(make_scheduler: Callable, steps: int, lrs=LRS) -> list[list[float]]:
    """The lr of every group before each of ``steps`` optimizer steps."""
    opt = make_optimizer(lrs)
    sched = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append([float(g["lr"]) for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def assert_close(actual: list[list[float]], expected: list[list[float]], what: str) -> None:
    assert len(actual) == len(expected)
    for t, (row_a, row_e) in enumerate(zip(actual, expected, strict=True)):
        for g, (a, e) in enumerate(zip(row_a, row_e, strict=True)):
            # exact zeros (e.g. at the end of a cosine) need an absolute floor
            assert math.isclose(a, e, rel_tol=REL, abs_tol=1e-15), (
                f"{what}: step {t} group {g}: ours {a!r} vs torch {e!r}"
            )


def per_group(build: Callable[[float], S.Schedule]) -> dict[str, S.Schedule]:
    """A per-group mapping for torch arguments that are absolute rates (eta_min, ...)."""
    return {f"g{i}": build(lr) for i, lr in enumerate(LRS)}


def closed_form(schedule, steps: int, lrs=LRS) -> list[list[float]]:
    scheds = S.torch_adapter.resolve(schedule, [{"name": f"g{i}"} for i in range(len(lrs))])
    return [[lr * s(t) for lr, s in zip(lrs, scheds, strict=True)] for t in range(steps)]


# (id, torch factory, our schedule or per-group mapping, number of steps compared)
CASES = [
    ("step-3-0.1", lambda o: L.StepLR(o, 3, 0.1), S.Step(3, 0.1), 30),
    ("step-7-0.5", lambda o: L.StepLR(o, step_size=7, gamma=0.5), S.Step(7, 0.5), 40),
    ("step-1-0.9", lambda o: L.StepLR(o, 1, 0.9), S.Step(1, 0.9), 25),
    ("multistep", lambda o: L.MultiStepLR(o, [2, 5, 9], 0.1), S.MultiStep([2, 5, 9], 0.1), 20),
    ("multistep-repeated", lambda o: L.MultiStepLR(o, [3, 3, 8], 0.5),
     S.MultiStep([3, 3, 8], 0.5), 15),
    ("multistep-at-0", lambda o: L.MultiStepLR(o, [0, 4], 0.3), S.MultiStep([0, 4], 0.3), 10),
    ("exponential-0.9", lambda o: L.ExponentialLR(o, 0.9), S.Exponential(0.9), 40),
    ("exponential-0.99", lambda o: L.ExponentialLR(o, 0.99), S.Exponential(0.99), 60),
    ("exponential-1.05", lambda o: L.ExponentialLR(o, 1.05), S.Exponential(1.05), 30),
    ("polynomial-10-1", lambda o: L.PolynomialLR(o, 10, 1.0), S.Polynomial(10, 1.0), 15),
    ("polynomial-10-2", lambda o: L.PolynomialLR(o, 10, 2.0), S.Polynomial(10, 2.0), 15),
    ("polynomial-7-0.5", lambda o: L.PolynomialLR(o, 7, 0.5), S.Polynomial(7, 0.5), 12),
    # torch's cosine keeps oscillating after T_max; ours stays at the floor: compare 0..T_max
    ("cosine-10", lambda o: L.CosineAnnealingLR(o, 10), S.Cosine(10), 11),
    ("cosine-50-eta", lambda o: L.CosineAnnealingLR(o, 50, eta_min=0.004),
     per_group(lambda lr: S.Cosine(50, floor=0.004 / lr)), 51),
    ("cosine-7-eta", lambda o: L.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
     per_group(lambda lr: S.Cosine(7, floor=0.01 / lr)), 8),
    ("sgdr-5-1", lambda o: L.CosineAnnealingWarmRestarts(o, 5), S.SGDR(5), 40),
    ("sgdr-3-2-eta", lambda o: L.CosineAnnealingWarmRestarts(o, 3, 2, eta_min=0.001),
     per_group(lambda lr: S.SGDR(3, 2, floor=0.001 / lr)), 60),
    ("sgdr-2-3", lambda o: L.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=3), S.SGDR(2, 3), 90),
    # torch's max_lr is our group base rate; compared over the steps torch allows
    ("onecycle-cos", lambda o: L.OneCycleLR(o, list(LRS), total_steps=50, cycle_momentum=False),
     S.OneCycle(50), 50),
    ("onecycle-linear", lambda o: L.OneCycleLR(
        o, list(LRS), total_steps=37, pct_start=0.25, anneal_strategy="linear",
        div_factor=10.0, final_div_factor=100.0, cycle_momentum=False),
     S.OneCycle(37, 0.25, "linear", 10.0, 100.0), 37),
    # the factory: torch's peak is at step pct_start * total_steps - 1 = warmup_steps
    ("onecycle-factory", lambda o: L.OneCycleLR(
        o, list(LRS), total_steps=40, pct_start=0.25, anneal_strategy="linear",
        div_factor=10.0, final_div_factor=100.0, three_phase=True, cycle_momentum=False),
     S.one_cycle(40, warmup_steps=9, start=0.1, floor=0.001, anneal_type="linear",
                 three_phase=True), 40),
    ("onecycle-three-phase", lambda o: L.OneCycleLR(
        o, list(LRS), total_steps=60, pct_start=0.4, three_phase=True, cycle_momentum=False),
     S.OneCycle(60, 0.4, three_phase=True), 60),
    ("onecycle-three-phase-linear", lambda o: L.OneCycleLR(
        o, list(LRS), epochs=4, steps_per_epoch=11, anneal_strategy="linear",
        three_phase=True, cycle_momentum=False),
     S.OneCycle(44, anneal_strategy="linear", three_phase=True), 44),
    # torch's base_lr/max_lr are absolute: max_lr = the group rate, base_lr = 2% of it
    ("cyclic-triangular", lambda o: L.CyclicLR(
        o, [0.02 * lr for lr in LRS], list(LRS), step_size_up=4, cycle_momentum=False),
     S.Cyclic(0.02, 1.0, step_size_up=4), 40),
    ("cyclic-triangular-asym", lambda o: L.CyclicLR(
        o, [0.02 * lr for lr in LRS], list(LRS), 3, 7, cycle_momentum=False),
     S.Cyclic(0.02, 1.0, 3, 7), 45),
    ("cyclic-triangular2", lambda o: L.CyclicLR(
        o, [0.02 * lr for lr in LRS], list(LRS), 5, mode="triangular2", cycle_momentum=False),
     S.Cyclic(0.02, 1.0, 5, mode="triangular2"), 50),
    ("cyclic-exp-range", lambda o: L.CyclicLR(
        o, [0.02 * lr for lr in LRS], list(LRS), 4, 6, mode="exp_range", gamma=0.97,
        cycle_momentum=False),
     S.Cyclic(0.02, 1.0, 4, 6, mode="exp_range", gamma=0.97), 50),
    ("linear-warmup", lambda o: L.LinearLR(o), S.Linear(), 10),
    ("linear-decay", lambda o: L.LinearLR(o, 0.5, 0.1, 8), S.Linear(0.5, 0.1, 8), 12),
    ("linear-to-zero", lambda o: L.LinearLR(o, 1.0, 0.0, 4), S.Linear(1.0, 0.0, 4), 6),
    ("constant-factor", lambda o: L.ConstantLR(o), S.warmup(5, warmup_type="constant", start=1 / 3),
     10),
    ("constant-factor-0.5-1", lambda o: L.ConstantLR(o, 0.5, 1),
     S.warmup(1, warmup_type="constant", start=0.5), 5),
    ("sequential-linear-cosine", lambda o: L.SequentialLR(
        o, [L.LinearLR(o, 0.25, 1.0, 4), L.CosineAnnealingLR(o, 10)], milestones=[4]),
     S.join([S.Linear(0.25, 1.0, 4), S.Cosine(10)], [4]), 15),
    ("sequential-exp-step", lambda o: L.SequentialLR(
        o, [L.ExponentialLR(o, 0.9), L.StepLR(o, 3, 0.5)], milestones=[5]),
     S.sequence([(S.Exponential(0.9), 5), S.Step(3, 0.5)]), 20),
    ("sequential-three", lambda o: L.SequentialLR(
        o, [L.ConstantLR(o, 0.1, 10), L.ExponentialLR(o, 0.8), L.StepLR(o, 2, 0.5)],
        milestones=[3, 8]),
     S.join([S.warmup(10, warmup_type="constant", start=0.1), S.Exponential(0.8),
             S.Step(2, 0.5)],
            [3, 8]), 16),
    # two torch schedulers on one optimizer multiply: our product
    ("chained-step-exp", lambda o: L.ChainedScheduler([L.StepLR(o, 3, 0.5),
                                                       L.ExponentialLR(o, 0.95)]),
     S.product(S.Step(3, 0.5), S.Exponential(0.95)), 20),
    ("chained-linear-multistep", lambda o: L.ChainedScheduler(
        [L.LinearLR(o, 0.2, 1.0, 5), L.MultiStepLR(o, [6, 9], 0.1)]),
     S.Linear(0.2, 1.0, 5) * S.MultiStep([6, 9], 0.1), 12),
]


@pytest.mark.parametrize(("make_torch", "ours", "steps"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_matches_torch_scheduler(make_torch, ours, steps):
    expected = drive(make_torch, steps)
    assert_close(closed_form(ours, steps), expected, "closed form")
    assert_close(drive(lambda o: S.to_torch(o, ours), steps), expected, "to_torch")


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in {
    "cosine-50-eta", "sgdr-3-2-eta", "onecycle-three-phase", "cyclic-exp-range",
    "sequential-three", "multistep", "polynomial-7-0.5",
}], ids=lambda c: c[0])
def test_to_torch_resume_is_exact(case):
    """Stop mid-run, save optimizer and scheduler, rebuild both, continue: same lrs."""
    _, _, schedule, steps = case
    reference = drive(lambda o: S.to_torch(o, schedule), steps)
    split = steps // 2

    opt = make_optimizer()
    sched = S.to_torch(opt, schedule)
    for _ in range(split):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # the state holds only plain data

    opt2 = make_optimizer(lrs=(1.0, 2.0))  # different rates: the checkpoint must win
    sched2 = S.to_torch(opt2, S.Constant(0.5))  # a different schedule: the saved one wins
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    resumed = []
    for _ in range(split, steps):
        resumed.append([float(g["lr"]) for g in opt2.param_groups])
        opt2.step()
        sched2.step()
    assert resumed == reference[split:]
    assert sched2.schedules == S.torch_adapter.resolve(schedule, opt.param_groups)
    assert sched2.get_last_lr() == closed_form(schedule, steps + 1)[-1]


def test_to_torch_deprecated_epoch_argument_uses_closed_form():
    opt = make_optimizer()
    sched = S.to_torch(opt, S.Cosine(20, floor=0.1))
    with pytest.warns(UserWarning):
        sched.step(13)
    assert [g["lr"] for g in opt.param_groups] == [lr * S.Cosine(20, floor=0.1)(13) for lr in LRS]


def test_to_torch_tensor_lr_is_updated_in_place():
    p = torch.nn.Parameter(torch.zeros(2))
    lr = torch.tensor(0.1)
    opt = torch.optim.SGD([p], lr=lr)
    sched = S.to_torch(opt, S.Step(2, 0.5))
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] is lr  # same tensor object, filled in place
    assert math.isclose(float(lr), 0.1 * 0.5**2, rel_tol=1e-6)


def test_to_torch_mapping_by_name_and_pattern():
    opt = make_optimizer(lrs=(0.1, 0.2, 0.3))
    opt.param_groups[2]["name"] = "head.out"
    sched = S.to_torch(opt, {"g0": S.Constant(0.5), "head.*": S.Step(1, 0.5), "*": S.Cosine(4)})
    assert [type(s).__name__ for s in sched.schedules] == ["Constant", "Cosine", "Step"]
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.2 * S.Cosine(4)(1), 0.3 * 0.5]


def test_to_torch_mapping_errors_list_the_names():
    opt = make_optimizer()
    with pytest.raises(ValueError, match=r"no schedule for param group 'g1'.*\['g0', 'g1'\]"):
        S.to_torch(opt, {"g0": S.Constant()})
    with pytest.raises(ValueError, match=r"\['decoder\.\*'\] match no param group"):
        S.to_torch(opt, {"*": S.Constant(), "decoder.*": S.Cosine(3)})
    with pytest.raises(TypeError, match="schedule must be a Schedule"):
        S.to_torch(opt, lambda t: 1.0)


def test_to_torch_is_an_lr_scheduler_usable_by_trainers():
    opt = make_optimizer()
    sched = S.to_torch(opt, S.warmup_cosine(100, 10))
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    assert sched.get_last_lr() == [0.0, 0.0]


# --- Hugging Face transformers schedules (an independent reference for wsd & co.) ---

def _hf():
    return pytest.importorskip("transformers.optimization")


HF_CASES = [
    ("wsd-linear-cosine", lambda hf, o: hf.get_wsd_schedule(o, 10, 20, num_training_steps=100),
     S.wsd(100, 10, decay_steps=20), 110),
    ("wsd-1-sqrt", lambda hf, o: hf.get_wsd_schedule(
        o, 7, 30, num_stable_steps=40, warmup_type="cosine", decay_type="1-sqrt",
        min_lr_ratio=0.1), S.WarmupStableDecay(7, 30, num_stable_steps=40, warmup_type="cosine",
                                                decay_type="1-sqrt", min_lr_ratio=0.1), 90),
    ("wsd-linear-cycles", lambda hf, o: hf.get_wsd_schedule(
        o, 0, 25, num_stable_steps=5, warmup_type="1-sqrt", decay_type="linear",
        min_lr_ratio=0.05, num_cycles=1.0), S.wsd(30, decay_steps=25, warmup_type="1-sqrt",
                                                  decay_type="linear", floor=0.05,
                                                  num_cycles=1.0), 40),
    ("inverse-sqrt", lambda hf, o: hf.get_inverse_sqrt_schedule(o, 10),
     S.InverseSqrt(10), 60),
    ("inverse-sqrt-timescale", lambda hf, o: hf.get_inverse_sqrt_schedule(o, 5, timescale=20),
     S.InverseSqrt(5, timescale=20), 60),
    ("inverse-sqrt-no-warmup", lambda hf, o: hf.get_inverse_sqrt_schedule(o, 0),
     S.InverseSqrt(), 30),
    ("cosine-with-warmup", lambda hf, o: hf.get_cosine_schedule_with_warmup(o, 8, 50),
     S.warmup_cosine(50, 8), 51),
    ("cosine-min-lr", lambda hf, o: hf.get_cosine_with_min_lr_schedule_with_warmup(
        o, 5, 40, min_lr_rate=0.1), S.warmup_cosine(40, 5, floor=0.1), 41),
    ("linear-with-warmup", lambda hf, o: hf.get_linear_schedule_with_warmup(o, 6, 30),
     S.warmup(6, then=S.Linear(1.0, 0.0, 24)), 35),
    ("constant-with-warmup", lambda hf, o: hf.get_constant_schedule_with_warmup(o, 9),
     S.warmup(9), 15),
]


@pytest.mark.parametrize(("make_hf", "ours", "steps"), [c[1:] for c in HF_CASES],
                         ids=[c[0] for c in HF_CASES])
def test_matches_hugging_face_schedule(make_hf, ours, steps):
    hf = _hf()
    expected = drive(lambda o: make_hf(hf, o), steps)
    assert_close(closed_form(ours, steps), expected, "closed form vs HF")


def test_epoch_based_torch_schedule_via_epochs_to_steps():
    """StepLR stepped once per epoch == our Step counted in optimizer steps."""
    steps_per_epoch = 4
    per_epoch = drive(lambda o: L.StepLR(o, step_size=3, gamma=0.5), 10)
    ours = S.Step(S.epochs_to_steps(3, steps_per_epoch), 0.5)
    for t in range(10 * steps_per_epoch):
        assert [lr * ours(t) for lr in LRS] == pytest.approx(
            per_epoch[t // steps_per_epoch], rel=REL
        )
