"""Plateau controller: same decisions as torch's ReduceLROnPlateau, plus warmup, hysteresis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cadence.controllers.plateau import Plateau
from cadence.protocol import Context, GroupView
from cadence.regime import Regime


def metric_sequence(n: int, seed: int, mode: str) -> list[float]:
    """A noisy decreasing curve with flat stretches (increasing for mode='max')."""
    rng = np.random.default_rng(seed)
    x, out = 1.0, []
    for i in range(n):
        if (i // 15) % 2 == 0:
            x *= 0.97
        out.append(x + rng.normal(0, 0.002))
    return out if mode == "min" else [-v for v in out]


def torch_lrs(seq, lr=0.1, **kw) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    out = []
    for m in seq:
        sched.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


CONFIGS = [
    dict(mode="min", factor=0.5, patience=3, threshold=1e-3, threshold_mode="rel", cooldown=0),
    dict(mode="min", factor=0.3, patience=2, threshold=5e-3, threshold_mode="abs", cooldown=2,
         min_lr=0.01),
    dict(mode="max", factor=0.5, patience=4, threshold=1e-4, threshold_mode="rel", cooldown=1),
    dict(mode="max", factor=0.1, patience=1, threshold=1e-3, threshold_mode="abs", cooldown=0,
         min_lr=1e-4),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_regime_with_plateau_matches_reduce_lr_on_plateau(cfg):
    seq = metric_sequence(90, seed=1, mode=cfg["mode"])
    expected = torch_lrs(seq, **cfg)
    assert len(set(expected)) > 2  # the sequence really triggers cuts

    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=0.1)
    ctrl = Plateau(monitor="val_loss", **cfg)
    regime = Regime(opt, preset="constant", controllers=[ctrl], max_change=None,
                    bounds={"lr": (0.0, 1.0)})
    used: list[float] = []
    opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    for m in seq:
        regime.observe(val_loss=m)
        loss = (p**2).sum() + 1.0
        loss.backward()
        regime.step(loss)
    assert used == pytest.approx(expected, rel=1e-12)
    cuts = [e for e in regime.events if e.source == "plateau"]
    previous = [0.1, *expected[:-1]]
    assert len(cuts) == sum(1 for a, b in zip(previous, expected, strict=True) if b < a)
    assert all("val_loss" in e.reason for e in cuts)


def context(step, metrics=None, metrics_step=None, warmup=0, lr=0.1):
    return Context(step=step, total_steps=None,
                   groups=[GroupView("g", {"lr": lr}, {"lr": 0.1})],
                   warmup_steps=warmup, metrics=metrics or {}, metrics_step=metrics_step)


def test_silent_during_warmup_and_fresh_best_after():
    c = Plateau(monitor="val_loss", patience=0)
    # during warmup: observations are ignored (a tiny warmup loss never becomes "best")
    assert c.propose({}, context(0, {"val_loss": 0.01}, 0, warmup=5)) == []
    assert c.propose({}, context(4, {"val_loss": 0.01}, 4, warmup=5)) == []
    assert c.checks == 0
    # the stale warmup observation is not used after warmup either
    assert c.propose({}, context(5, {"val_loss": 0.01}, 4, warmup=5)) == []
    assert c.propose({}, context(6, {"val_loss": 1.0}, 6, warmup=5)) == []
    assert c.best == 1.0
    (p,) = c.propose({}, context(7, {"val_loss": 1.0}, 7, warmup=5))
    assert p.factor == pytest.approx(0.1) and p.group == "g"


def test_signal_monitor_checks_every_k_steps():
    c = Plateau(monitor="loss_ema_short", check_every=4, patience=100)
    for s in range(20):
        c.propose({"loss_ema_short": 1.0 - 0.01 * s}, context(s))
    assert c.checks == 5  # steps 0, 4, 8, 12, 16


def test_hysteresis_keeps_a_noisy_plateau_alive():
    seq = [1.0, 1.0, 0.9995, 0.9995, 0.9995]

    def first_cut(h):
        c = Plateau(monitor="m", patience=1, threshold=1e-4, hysteresis=h)
        for i, v in enumerate(seq):
            if c.check(v) == "cut":
                return i
        return None

    assert first_cut(1.0) == 4  # torch: the small gain at index 2 resets patience
    assert first_cut(10.0) == 2  # needs 10x the threshold once a bad streak has begun


def test_bounded_nudge_up_after_long_plateau():
    c = Plateau(monitor="m", patience=100, nudge_factor=1.2, nudge_patience=3, max_nudges=1)
    props = [c.propose({"m": 1.0}, context(s)) for s in range(12)]
    ups = [p for ps in props for p in ps]
    assert len(ups) == 1 and ups[0].factor == 1.2 and "nudge" in ups[0].reason


def test_state_round_trip_and_errors():
    c = Plateau(monitor="m", patience=2)
    for v in [1.0, 0.9, 0.95, 0.96]:
        c.check(v)
    d = Plateau(monitor="m", patience=2)
    d.load_state_dict(c.state_dict())
    assert [c.check(0.97), c.check(0.98)] == [d.check(0.97), d.check(0.98)]
    with pytest.raises(ValueError, match="mode"):
        Plateau(mode="up")
    with pytest.raises(ValueError, match="factor"):
        Plateau(factor=1.5)
    with pytest.raises(ValueError, match="threshold_mode"):
        Plateau(threshold_mode="pct")


def test_plateau_preset_cuts_on_flat_training_loss():
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=0.1)
    regime = Regime(opt, total_steps=200, preset="plateau")
    for _ in range(200):
        loss = (p * 0).sum() + 1.0  # flat loss: no progress at all
        loss.backward()
        regime.step(loss)
    cuts = [e for e in regime.events if e.source == "plateau"]
    assert cuts and regime.values("group0")["lr"] < 0.1
    assert all(e.new < e.old for e in cuts)
