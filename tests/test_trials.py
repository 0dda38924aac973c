"""Trials: the judge's false-keep rate on pure noise, its power, and trials inside a Regime."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch

import cadence
from cadence.protocol import Context, Controller, Proposal, Signals, TrialSpec
from cadence.regime.trials import BASELINE_WINDOWS, HARM_RISE, Trials, compare, verdict

Z = 2.0


def _judge(rng: np.random.Generator, w: int, rho: float, rate_after: float,
           start_at: tuple[int, int] = (50, 2000), sigma: float = 0.1) -> bool:
    """One trial on a synthetic log-loss stream: a power-law curve plus AR(1) Student-t
    noise (σ in log units); 4 windows of history, the baseline window, a burn-in,
    then the trial window, whose progress from its start is ``rate_after`` × the curve's
    (1.0: a placebo)."""
    hist, burn = 4 * w, w // 2
    n = hist + w + burn + w
    t = np.arange(n) + int(rng.integers(*start_at))
    trend = np.log(0.3 + 2.0 * t**-0.5)
    start = hist + w + burn
    trend[start:] += (rate_after - 1.0) * (trend[start:] - trend[start])
    shocks = rng.standard_t(3, size=n) / math.sqrt(3)
    noise = np.zeros(n)
    for i in range(1, n):
        noise[i] = rho * noise[i - 1] + math.sqrt(1 - rho**2) * shocks[i]
    pts = list(enumerate((trend + sigma * noise).tolist()))
    base = BASELINE_WINDOWS * w
    ev = compare(pts[hist + w - base:hist + w], pts[start:], w, pts[:hist + w - base])
    return verdict(ev, Z, 1e-3)[0]


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("w", [30, 60])
def test_false_keep_rate_on_pure_noise_is_at_most_five_percent(w: int, rho: float) -> None:
    """Placebo trials (nothing changes) are kept at most 5 % of the time, with white,
    moderately and strongly correlated heavy-tailed noise (docs/auto.md has the table)."""
    rng = np.random.default_rng(100 + w + int(10 * rho))
    n = 1000
    keeps = sum(_judge(rng, w, rho, 1.0) for _ in range(n))
    assert keeps / n <= 0.05, f"placebo trials kept {keeps}/{n} at window {w}, rho {rho}"


@pytest.mark.parametrize(("sigma", "rate", "power"),
                         [(0.02, 2.0, 0.4), (0.02, 4.0, 0.9), (0.05, 4.0, 0.6)])
def test_power_to_find_faster_progress(sigma: float, rate: float, power: float) -> None:
    """Early in training (steps 20-100), a trial whose progress is ``rate`` × the
    incumbent's is kept in at least ``power`` of the runs; σ is the mini-batch noise in
    log-loss. Measured (docs/auto.md): σ 0.02: 59 % at ×2, 99 % at ×4; σ 0.05: 13 % and
    71 %; σ 0.1: 5 % and 24 %. The judge errs towards the incumbent."""
    rng = np.random.default_rng(7)
    n = 300
    wins = sum(_judge(rng, 30, 0.0, rate, start_at=(20, 100), sigma=sigma) for _ in range(n))
    assert wins / n >= power, wins


# -- trials inside a Regime -----------------------------------------------------------------

class TryOnce(Controller):
    """Proposes one lr trial ×factor at ``at``."""

    name = "try_once"
    proposes_trials = True

    def __init__(self, factor: float = 4.0, at: int = 40, window: int = 30) -> None:
        self.factor, self.at, self.window = factor, at, window

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        if context.step != self.at:
            return []
        return [Proposal("lr", factor=self.factor, source=self.name, reason="test",
                         trial=TrialSpec(window=self.window, burn_in=5, horizon=self.window))]


def _regression(lr: float, ctrl: Controller, steps: int = 120) -> tuple[Any, torch.nn.Module]:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=gen)
    y = x @ torch.randn(10, 1, generator=gen) + 0.01 * torch.randn(256, 1, generator=gen)
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    regime = cadence.Regime(opt, total_steps=steps, preset="constant", controllers=[ctrl],
                            guard=False, max_change=None)
    for i in range(steps):
        idx = torch.randint(0, 256, (32,), generator=gen)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        loss.backward()
        regime.step(loss)
        if i == steps - 1:
            break
    return regime, model


def _trial_events(regime: Any) -> list[Any]:
    return [e for e in regime.events if e.kind == "trial"]


def test_a_better_lr_is_kept() -> None:
    regime, _ = _regression(1e-3, TryOnce(factor=4.0))  # far too small for this problem
    started, ended = _trial_events(regime)
    assert "started" in started.reason and "kept" in ended.reason, ended.reason
    assert ended.step == 40 + 5 + 30
    assert "trial_effect" in ended.signals and ended.signals["trial_effect"] < 0
    assert regime.values()["group0"]["lr"] == pytest.approx(4e-3)


def test_a_worse_lr_is_reverted_exactly() -> None:
    regime, _ = _regression(0.05, TryOnce(factor=0.25))  # a good lr cut ×4: slower
    started, ended = _trial_events(regime)
    assert "reverted" in ended.reason, ended.reason
    assert regime.values()["group0"]["lr"] == pytest.approx(0.05)
    # the revert is an lr change back, logged with its source
    assert any(e.source == "trials" and e.kind == "change" for e in regime.events)


def test_trials_respect_the_horizon_and_the_budget() -> None:
    t = Trials(total_steps=100, max_trials=1, max_share=0.4)
    spec = TrialSpec(window=30, burn_in=5)
    assert t.budget_left(spec, 10)
    assert not t.budget_left(spec, 70)          # would end after the run
    assert not Trials(100, max_share=0.3).budget_left(spec, 10)  # 35 steps > 30 % of 100
    for s in range(40):
        t.record(s, 1.0 / (s + 1))
    p = Proposal("lr", factor=2.0, trial=spec)
    out, events = t.judge([p], 40, {})
    assert out and out[0].urgent and out[0].trial is None and len(events) == 1
    out, _ = t.judge([Proposal("lr", factor=0.5, reason="other"),
                      Proposal("lr", factor=2.0, trial=spec)], 41, {})
    assert out == []  # the knob under trial is the trial's alone; one trial at a time
    assert not Trials(100, max_factor=4.0)._can_open(Proposal("lr", factor=8.0, trial=spec), 40)


def test_a_guard_action_during_a_trial_reverts_it() -> None:
    t = Trials(total_steps=1000)
    for s in range(40):
        t.record(s, 1.0)
    t.judge([Proposal("lr", factor=2.0, trial=TrialSpec(window=30))], 40, {})
    events = t.abort(45, "loss spike", {})
    assert events and "aborted" in events[0].reason and t.open is None
    out, _ = t.judge([], 46, {})
    assert out[0].factor == pytest.approx(0.5) and out[0].urgent


def test_trials_state_round_trips_mid_trial() -> None:
    t = Trials(total_steps=1000)
    for s in range(60):
        t.record(s, 2.0 - 0.01 * s)
    t.judge([Proposal("lr", factor=2.0, trial=TrialSpec(window=20, burn_in=5))], 60, {})
    for s in range(60, 70):
        t.record(s, 1.4 - 0.02 * (s - 60))
    clone = Trials(total_steps=1000)
    clone.load_state_dict(t.state_dict())
    for s in range(70, 90):
        t.record(s, 1.2 - 0.02 * (s - 70))
        clone.record(s, 1.2 - 0.02 * (s - 70))
    a, ea = t.judge([], 90, {})
    b, eb = clone.judge([], 90, {})
    assert a == b and [e.reason for e in ea] == [e.reason for e in eb]
    assert t.outcomes == clone.outcomes and len(t.outcomes) == 1


def test_auto_runs_trials_and_logs_them() -> None:
    """``auto`` on a small regression: its lr trials start after the warmup, each ends
    (kept or reverted) with its evidence, and all are over by half the run. A run shorter
    than 750 steps has none (a trial would take too large a share of it)."""
    from cadence.controllers.lr_trials import LRTrials

    assert not LRTrials().long_enough(749) and LRTrials().long_enough(750)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=gen)
    y = torch.tanh(x @ torch.randn(8, 1, generator=gen))
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        regime = cadence.Regime(opt, total_steps=800)
        for _ in range(800):
            idx = torch.randint(0, 512, (32,), generator=gen)
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            regime.step(loss)
    trials = _trial_events(regime)
    started = [e for e in trials if "started" in e.reason]
    ended = [e for e in trials if "kept" in e.reason or "reverted" in e.reason]
    assert started and len(started) == len(ended)
    assert all(e.step <= 400 for e in ended) and started[0].step >= regime.warmup_steps
    judged = [e for e in ended if "aborted:" not in e.reason]  # a guard action ends one early
    assert judged and all("z " in e.reason and "trial_se" in e.signals for e in judged)
    guarded = {e.step for e in regime.events if e.kind in ("rollback", "skip")}
    assert all(e.step in guarded for e in ended if e not in judged)


def _outcome(i: int, kept: bool, z: float) -> Any:
    from cadence.protocol import TrialOutcome

    return TrialOutcome(i, "lr_trials", "lr", 2.0, 0, 0, kept, -0.1 * z, z)


@pytest.mark.parametrize(("z", "retried"), [(-1.5, True), (-0.5, False), (0.8, False)])
def test_an_inconclusive_up_move_is_retried_once_with_a_longer_window(
        z: float, retried: bool) -> None:
    from cadence.controllers.lr_trials import LRTrials

    with pytest.raises(ValueError, match="retry_z must be <= 0"):
        LRTrials(retry_z=0.5)
    c = LRTrials()
    w = c.window(3000)
    first = _outcome(1, True, -5.0)
    c.propose({}, Context(step=500, total_steps=3000, groups=(), trials=(first,)))
    again = (first, _outcome(2, False, z))
    props = c.propose({}, Context(step=500, total_steps=3000, groups=(), trials=again))
    if not retried:  # evidence against (or too weak to retry): the search ends
        assert c.direction == 0 and props == []
        return
    assert props and props[0].factor == 2.0 and props[0].trial.window == 2 * w
    # the retry reverted as well: no third attempt, the search is over
    assert c.propose({}, Context(step=900, total_steps=3000, groups=(),
                                 trials=(*again, _outcome(3, False, -1.5)))) == []
    assert c.direction == 0 and c.window(3000) == w


def test_no_known_good_snapshot_is_taken_while_a_trial_is_open() -> None:
    """A tentative state is not known-good: a rollback or drift check must not go back to
    weights trained at a trial's lr before the trial was kept."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=gen)
    y = x @ torch.randn(10, 1, generator=gen)
    model = torch.nn.Linear(10, 1)
    regime = cadence.Regime(torch.optim.SGD(model.parameters(), lr=0.01), total_steps=120,
                            preset="constant", controllers=[TryOnce(at=40, window=30)],
                            snapshot_every=10, max_change=None)
    taken: list[int] = []
    take = regime.snapshot.take
    regime.snapshot.take = lambda step: (taken.append(step), take(step))[1]  # type: ignore[method-assign]
    for _ in range(120):
        idx = torch.randint(0, 256, (32,), generator=gen)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        loss.backward()
        regime.step(loss)
    start, end = [e.step for e in _trial_events(regime)][:2]
    assert start == 40 and end > start
    assert [s for s in taken if start < s < end] == []  # 40: taken before it opened
    assert 30 in taken and any(s >= end for s in taken)


def _noisy_regression(lr: float, ctrl: Controller, steps: int = 150,
                      on_step: Any = None) -> tuple[Any, torch.nn.Module]:
    """SGD on a noisy linear regression, guard on (snapshots every 10 updates)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=gen)
    y = x @ torch.randn(10, 1, generator=gen) + 0.5 * torch.randn(256, 1, generator=gen)
    model = torch.nn.Linear(10, 1)
    regime = cadence.Regime(torch.optim.SGD(model.parameters(), lr=lr), total_steps=steps,
                            preset="constant", controllers=[ctrl], snapshot_every=10,
                            max_change=None)
    for _ in range(steps):
        if on_step is not None:
            on_step(regime, model)
        idx = torch.randint(0, 256, (32,), generator=gen)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        loss.backward()
        regime.step(loss)
    return regime, model


def test_a_harmful_trial_gives_back_the_weights_it_started_from() -> None:
    """lr ×4 near the stability edge raises the loss: the revert restores the lr and the
    weights of the trial's first update (snapshotted when it opened), and drops that
    update, as a rollback does; the guard's rollback budget is not charged."""
    seen: dict[int, list[torch.Tensor]] = {}

    def keep(regime: Any, model: torch.nn.Module) -> None:
        seen[regime.step_count] = [p.detach().clone() for p in model.parameters()]

    regime, model = _noisy_regression(0.12, TryOnce(factor=4.0, at=40, window=30), on_step=keep)
    started, ended = _trial_events(regime)
    assert "reverted" in ended.reason and "harmful" in ended.reason, ended.reason
    rise = ended.signals["trial_level_trial"] - ended.signals["trial_level_baseline"]
    assert rise > HARM_RISE
    undo = [e for e in regime.events if e.kind == "rollback" and e.source == "trials"]
    assert len(undo) == 1 and undo[0].step == ended.step and "step 40" in undo[0].reason
    assert regime.guard is not None and regime.guard.rollbacks == []
    assert regime.values()["group0"]["lr"] == pytest.approx(0.12)
    # the revert's update was dropped (step_count stayed), so the next update saw exactly
    # the weights update 40 saw, when the trial opened
    assert all(torch.equal(a, b) for a, b in zip(seen[ended.step], seen[40], strict=True))


@pytest.mark.parametrize("lr, factor", [(0.05, 0.25), (0.1, 4.0)])
def test_a_slower_or_mildly_worse_trial_keeps_its_weights(lr: float, factor: float) -> None:
    """A ×0.25 cut of a good lr (slower progress) and a ×4 raise whose loss rises less than
    ×1.25 are reverted, but their steps are kept: no restore."""
    regime, _ = _noisy_regression(lr, TryOnce(factor=factor, at=40, window=30))
    _, ended = _trial_events(regime)
    assert "reverted" in ended.reason and "harmful" not in ended.reason, ended.reason
    assert ended.signals["trial_level_trial"] - ended.signals["trial_level_baseline"] < HARM_RISE
    assert not [e for e in regime.events if e.kind == "rollback"]


def test_trials_ask_for_a_restore_only_when_harmful() -> None:
    trials = Trials(total_steps=1000)
    rng = np.random.default_rng(0)
    losses = iter(1.0 + 0.01 * rng.standard_normal(400))
    proposal = Proposal("lr", factor=2.0, source="t", reason="r",
                        trial=TrialSpec(window=30, burn_in=5, horizon=30))
    for step in range(100):
        trials.record(step, next(losses))
    _, _ = trials.judge([proposal], 100, {})
    assert trials.open is not None and trials.open.start == 100
    for step in range(100, 136):
        trials.record(step, 2.0 + 0.01 * rng.standard_normal())  # the loss doubled
    trials.judge([], 135, {})
    assert trials.outcomes[-1].kept is False
    assert trials.pop_restore() == 100 and trials.pop_restore() is None
