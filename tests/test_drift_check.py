"""The guard's drift check: a training-loss rise is answered by a re-warm only when the
restored known-good weights show it too (the data changed), never when the weights or the
lr caused it."""

from __future__ import annotations

import warnings

import torch

import cadence
from cadence.regime.guard import Guard


def _run(kind: str, steps: int = 520, seed: int = 0) -> cadence.Regime:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(10, 3, generator=gen)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = None
    if kind == "lr":  # the lr climbs ×8 from step 400: the loss rises, the data is the same
        def schedule(s: int) -> float:
            return 1.0 if s < 400 else min(8.0, 1.0 + (s - 400) / 15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the ×8 ramp makes the run chaotic: which fires first, a drift alarm or a spike,
        # depends on the whole path (seed, lr trials); the "lr" test's seed takes the
        # drift-check path it is about (seeds 2, 4 and 5 do since harmful trials restore
        # their start's weights; seed 2's first trial is one; with the 45-update warmup
        # auto had before its warmup floor)
        regime = cadence.Regime(opt, total_steps=900, schedule=schedule, warmup_steps=45)
        for step in range(steps):
            x = torch.randn(64, 10, generator=gen)
            y = (x @ w).argmax(1)
            if kind == "shift" and step >= 400:  # inputs get noisier over 100 steps
                x = x + min(1.0, (step - 400) / 100) * torch.randn(64, 10, generator=gen)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            regime.step(loss)
    return regime


def _rewarms(regime: cadence.Regime) -> int:
    return sum(e.source.startswith("drift_response") and "confirmed" in e.reason
               for e in regime.events)


def test_a_rise_the_lr_caused_is_not_answered_by_a_rewarm() -> None:
    regime = _run("lr", seed=2)
    assert _rewarms(regime) == 0
    assert not [e for e in regime.events if e.kind == "drift"]
    checked = [e for e in regime.events if e.reason.startswith("drift check ended")]
    assert checked and "no data shift" in checked[0].reason
    cut = [e for e in regime.events if e.reason.startswith("drift check: no data shift")]
    assert cut and cut[0].knob == "lr" and cut[0].new < cut[0].old  # the lr was cut
    starts = {e.step for e in regime.events
              if e.kind == "rollback" and e.reason.startswith("drift check")}
    assert starts and regime.guard is not None
    assert not starts & set(regime.guard.rollbacks)  # a check is not charged as a rollback


def test_a_shift_of_the_data_is_confirmed_then_rewarmed() -> None:
    regime = _run("shift")
    drift = [e for e in regime.events if e.kind == "drift" and e.source == "guard"]
    assert drift and drift[0].step >= 400 and "data changed" in drift[0].reason
    assert _rewarms(regime) == 1
    # every re-warm event carries the current readings, not the trigger's repeated
    follow = [e for e in regime.events if e.source.startswith("drift_response")][1:]
    assert follow and all("after the shift of step" in e.reason for e in follow)


def test_the_check_state_survives_a_state_dict_round_trip() -> None:
    guard = Guard(min_history=3, spike_window=5)
    for step, loss in enumerate([1.0, 0.9, 0.95, 0.92, 0.91]):
        assert guard.check({"loss": loss, "grad_norm": 1.0}, step)[0] == "ok"
    guard.mark_reference(4)
    verdict, reason = guard.check({"loss": 1.05, "grad_norm": 1.0, "drift.alarm": 1.0}, 5)
    assert verdict == "rollback" and reason.startswith("drift check")
    guard.rewind(4)
    assert guard.check({"loss": 0.85, "grad_norm": 1.0}, 6)[0] == "skip"
    other = Guard(min_history=3, spike_window=5)
    other.load_state_dict(guard.state_dict())
    assert other.checking == guard.checking and other.reference == guard.reference
    verdicts = [other.check({"loss": 0.85, "grad_norm": 1.0}, 7 + k)[0] for k in range(5)]
    assert verdicts == ["skip", "skip", "skip", "skip", "checked"]
    # the restored weights are clearly better on the same data: the weights did it
    assert other.rollbacks == [] and other.pending_cut is not None
    cut = other.reintroduce(12)
    assert cut and cut[0].factor == 0.5 and cut[0].reason.startswith("drift check")


def test_a_drift_alarm_during_a_trial_starts_no_check() -> None:
    """A trial's lr move explains a rise of the loss (its verdict reverts it if it hurts):
    the guard leaves the alarm unanswered then, and answers it again afterwards."""
    guard = Guard(min_history=3, spike_window=5)
    for step, loss in enumerate([1.0, 0.9, 0.95, 0.92, 0.91]):
        assert guard.check({"loss": loss, "grad_norm": 1.0}, step)[0] == "ok"
    guard.mark_reference(4)
    alarm = {"loss": 1.05, "grad_norm": 1.0, "drift.alarm": 1.0}
    assert guard.check(alarm, 5, drift_checks=False) == ("ok", "")
    assert guard.checking is None
    assert guard.check(alarm, 6)[0] == "rollback" and guard.checking is not None


def test_an_alarm_below_the_snapshots_losses_starts_no_check() -> None:
    """A drift alarm on the trend while the recent losses are still below the known-good
    snapshot's (a near-zero loss wobbling, or a fast fall pausing): restoring the snapshot
    cannot show a shift, so no batches are spent on a check; above them, the check starts."""
    def guard() -> Guard:
        g = Guard(min_history=3, spike_window=5, drift_check_steps=3)
        for step, loss in enumerate([1.0, 0.9, 0.95, 0.92, 0.91]):
            assert g.check({"loss": loss, "grad_norm": 1.0}, step)[0] == "ok"
        g.mark_reference(4)  # the snapshot's losses: median 0.92
        return g

    below = guard()  # recent mean (0.92 + 0.91 + 0.85) / 3 < 0.92
    assert below.check({"loss": 0.85, "grad_norm": 1.0, "drift.alarm": 1.0}, 5) == ("ok", "")
    assert below.checking is None
    above = guard()  # recent mean (0.92 + 0.91 + 1.0) / 3 > 0.92
    verdict, reason = above.check({"loss": 1.0, "grad_norm": 1.0, "drift.alarm": 1.0}, 5)
    assert verdict == "rollback" and reason.startswith("drift check")
    one = Guard(min_history=3, spike_window=5, drift_check_steps=1)  # the window: this loss
    for step, loss in enumerate([5.0, 0.9, 0.95, 0.92, 0.91]):
        one.check({"loss": loss, "grad_norm": 1.0}, step)
    one.mark_reference(4)
    assert one.check({"loss": 0.9, "grad_norm": 1.0, "drift.alarm": 1.0}, 5) == ("ok", "")
