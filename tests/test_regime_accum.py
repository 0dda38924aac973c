"""Real updates are what count: gradient accumulation and GradScaler-skipped steps."""

from __future__ import annotations

import math

import pytest
import torch

from cadence.protocol import Signal
from cadence.regime import Regime


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def micro_loss(model: torch.nn.Module, i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(500 + i)
    x = torch.randn(8, 4, generator=g)
    return ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()


class MicroNorms(Signal):
    """Test signal: records the micro-batch gradient norms the Regime hands over."""

    name, every = "micro", 1

    def __init__(self) -> None:
        self.seen: list[list[float]] = []

    def measure(self, ctx):
        self.seen.append(list(ctx.micro_grad_norms))
        return {}

    def update(self, reduced):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_accumulation_steps_once_per_k_and_matches_manual_loop():
    k, updates = 3, 4
    m1, m2 = make_model(), make_model()
    o1 = torch.optim.SGD(m1.parameters(), lr=0.1, momentum=0.9)
    o2 = torch.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)
    sig = MicroNorms()
    regime = Regime(o2, total_steps=updates, preset="cosine", warmup_steps=0,
                    accumulation_steps=k, signals=[sig])
    seen_lrs: list[float] = []
    o2.register_step_pre_hook(lambda o, a, kw: seen_lrs.append(o.param_groups[0]["lr"]))
    results, expected_norms, passed = [], [], []
    for u in range(updates):
        for j in range(k):
            i = u * k + j
            # independent reference: each micro-batch's own gradient norm
            grads = torch.autograd.grad(micro_loss(m2, i) / k, list(m2.parameters()))
            expected_norms.append(math.sqrt(sum(float((g**2).sum()) for g in grads)))
            (micro_loss(m1, i) / k).backward()
            loss = micro_loss(m2, i) / k
            loss.backward()
            passed.append(loss.item())
            results.append(regime.step(loss))
        for g in o1.param_groups:
            g["lr"] = 0.1 * 0.5 * (1 + math.cos(math.pi * u / updates))
        o1.step()
        o1.zero_grad()
    assert results == [False, False, True] * updates
    assert regime.step_count == updates
    assert len(seen_lrs) == updates
    assert seen_lrs == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * u / updates))
                                      for u in range(updates)])
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    flat = [n for per_update in sig.seen for n in per_update]
    assert [len(s) for s in sig.seen] == [k] * updates
    assert flat == pytest.approx(expected_norms, rel=1e-5)
    # the step's loss is the mean of the micro-batch losses
    assert regime.signals["loss"] == pytest.approx(sum(passed[-k:]) / k, rel=1e-6)


def test_grad_scaler_skipped_steps_are_not_counted():
    m1, m2 = make_model(), make_model()
    o1 = torch.optim.SGD(m1.parameters(), lr=0.01)
    o2 = torch.optim.SGD(m2.parameters(), lr=0.01)
    s1 = torch.amp.GradScaler("cpu", init_scale=2.0**126)
    s2 = torch.amp.GradScaler("cpu", init_scale=2.0**126)
    regime = Regime(o2, preset="constant", scaler=s2)
    stepped = []
    for i in range(8):
        loss = micro_loss(m1, i) * 100
        s1.scale(loss).backward()
        s1.step(o1)
        s1.update()
        o1.zero_grad()
        loss = micro_loss(m2, i) * 100
        s2.scale(loss).backward()
        stepped.append(regime.step(loss))
    assert stepped[0] is False and stepped[-1] is True  # the huge scale overflows first
    assert regime.step_count == sum(stepped)
    assert s2.get_scale() == s1.get_scale() < 2.0**126
    skips = [e for e in regime.events if e.kind == "skip"]
    assert len(skips) == stepped.count(False) and all(e.source == "scaler" for e in skips)
    assert regime.guard.skips == 0  # scaler overflows are not guard failures
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
