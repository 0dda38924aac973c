"""The bench's oracle schedule is ``cadence.schedules.warmup_cosine`` itself, so the oracle
(``adamw-cosine``) and the ``cosine`` preset follow the same lr at every step."""

from __future__ import annotations

import pytest
import torch

from cadence import schedules as S
from cadence.bench.methods import RunContext, get_method, warmup_cosine
from cadence.bench.methods.base import WARMUP_FRACTION
from cadence.regime.presets import resolve_preset

TOTALS = (1, 9, 10, 19, 20, 21, 100, 200, 3001)


def _lambda_lr(schedule, steps: int) -> list[float]:
    """The lr torch's ``LambdaLR`` sets at each step (read before ``optimizer.step()``)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("total", TOTALS)
def test_bench_schedule_is_warmup_cosine_at_every_step(total: int) -> None:
    warmup_steps = int(round(WARMUP_FRACTION * total))
    expected = S.warmup_cosine(total_steps=total, warmup_steps=warmup_steps)
    ours = warmup_cosine(total)
    assert ours == expected
    values = [expected(t) for t in range(total + 1)]
    assert [ours(t) for t in range(total + 1)] == values
    assert _lambda_lr(ours, total + 1) == values
    if warmup_steps:  # linear from 0; the peak exactly at warmup_steps, as torch's LinearLR
        assert values[0] == 0.0 and values[warmup_steps] == 1.0
        assert values[warmup_steps - 1] < 1.0
    assert values[total] == 0.0


def test_bench_schedule_without_warmup_is_the_cosine() -> None:
    assert warmup_cosine(200, 0.0) == S.cosine(total_steps=200)


@pytest.mark.parametrize("total", TOTALS)
def test_oracle_and_cosine_preset_have_the_same_schedule(total: int) -> None:
    preset = resolve_preset("cosine", total, None).schedule
    assert [preset(t) for t in range(total + 1)] == [
        warmup_cosine(total)(t) for t in range(total + 1)
    ]


def test_oracle_and_cosine_preset_set_the_same_lr_at_every_step() -> None:
    """Driven as the bench drives them: the lr after each step, for the next one."""
    total, lr = 60, 1e-2
    trajectories = []
    for name in ("adamw-cosine", "cadence-cosine"):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        trainer = get_method(name).build(model, lr, RunContext(total_steps=total))
        lrs = []
        for _ in range(total):
            loss = model(torch.ones(4, 3)).pow(2).mean()
            loss.backward()
            trainer.step(loss)
            lrs.append(trainer.current_lr())
        trajectories.append(lrs)
    oracle, preset = trajectories
    assert oracle == pytest.approx(preset, rel=1e-12, abs=0.0)
    assert oracle[2] == pytest.approx(lr)  # 3 warmup steps: the peak is the lr of step 3
