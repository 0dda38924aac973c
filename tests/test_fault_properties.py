"""Fault injection under ``auto`` (hypothesis): random schedules of NaN/inf losses, a NaN
gradient in one parameter, ×1e3 gradient spikes, a label-noise burst and a data shift on a
small MLP. Whatever the schedule: the weights stay finite, the run is not lost (no
exception), and every skip, rollback and shift the guard made is an event."""

from __future__ import annotations

import math
import warnings

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cadence

STEPS = 160
FAULTS = ("nan_loss", "inf_loss", "nan_grad", "spike")


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, object]:
    faults = draw(st.dictionaries(st.integers(30, STEPS - 5), st.sampled_from(FAULTS),
                                  max_size=4))
    burst = draw(st.none() | st.integers(30, STEPS - 20))  # 10 steps of random labels
    shift = draw(st.none() | st.integers(60, STEPS - 10))  # inputs noisier from then on
    return {"faults": faults, "burst": burst, "shift": shift,
            "seed": draw(st.integers(0, 3))}


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_no_fault_schedule_loses_the_run(plan: dict[str, object]) -> None:
    faults: dict[int, str] = plan["faults"]  # type: ignore[assignment]
    burst, shift, seed = plan["burst"], plan["shift"], int(plan["seed"])  # type: ignore[call-overload]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 3, generator=gen)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    injected: list[tuple[int, str]] = []  # (regime step at injection, fault)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        regime = cadence.Regime(opt, total_steps=STEPS)
        for step in range(STEPS):
            x = torch.randn(32, 8, generator=gen)
            y = (x @ w).argmax(1)
            if burst is not None and burst <= step < burst + 10:  # type: ignore[operator]
                y = torch.randint(0, 3, y.shape, generator=gen)
            if shift is not None and step >= shift:  # type: ignore[operator]
                x = x + 0.7 * torch.randn(x.shape, generator=gen)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            fault = faults.get(step)
            if fault == "nan_loss":
                loss = loss * float("nan")
            elif fault == "inf_loss":
                loss = loss * float("inf")
            loss.backward()
            if fault == "nan_grad":
                grad = model[2].weight.grad
                assert grad is not None
                grad[0, 0] = float("nan")
            elif fault == "spike":
                for p in model.parameters():
                    assert p.grad is not None
                    p.grad.mul_(1e3)
            if fault is not None:
                injected.append((regime.step_count, fault))
            regime.step(loss)  # never raises: the run is not lost
            assert all(bool(torch.isfinite(p).all()) for p in model.parameters()), step
    events = regime.events
    guarded = {(e.step, e.kind) for e in events if e.source in ("guard", "scaler")}
    for at, fault in injected:
        if fault != "spike":  # a non-finite step is skipped (or rolled back), with an event
            assert (at, "skip") in guarded or (at, "rollback") in guarded, (at, fault)
    assert regime.guard is not None
    for at in regime.guard.rollbacks:
        assert (at, "rollback") in guarded
    skips = sum(e.kind == "skip" and e.reason.startswith("non-finite") for e in events)
    rollbacks_on_bad = sum(e.kind == "rollback" and "consecutive bad steps" in e.reason
                           for e in events)
    assert skips + rollbacks_on_bad == regime.guard.skips  # every non-finite step logged
    shifts = [e for e in events if e.kind == "drift" and e.source == "guard"]
    assert all(math.isfinite(e.signals.get("shift.z", 0.0)) for e in shifts)
