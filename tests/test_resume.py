"""Exact resume: stop, save, load in a fresh process, continue == uninterrupted, bit for bit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cadence.controllers.plateau import Plateau
from cadence.regime import Regime

SCRIPTS = Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
import resume_regime as rr  # noqa: E402


def test_resume_in_fresh_process_is_bit_exact(tmp_path):
    reference, at_split = {}, {}
    for preset in rr.PRESETS:
        model, opt, regime = rr.build(preset)
        rr.train(model, regime, 0, rr.TOTAL)
        reference[preset] = (model, regime)
        model, opt, regime = rr.build(preset)
        rr.train(model, regime, 0, rr.SPLIT)
        at_split[preset] = len(regime.events)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "regime": regime.state_dict()}, tmp_path / f"{preset}-ckpt.pt")
    env_path = str(Path(__file__).parents[1] / "src")
    proc = subprocess.run([sys.executable, str(SCRIPTS / "resume_regime.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    for preset in rr.PRESETS:
        model, regime = reference[preset]
        out = torch.load(tmp_path / f"{preset}-final.pt", weights_only=True)
        for a, b in zip(model.parameters(), out["params"], strict=True):
            assert torch.equal(a.detach(), b), preset
        assert out["values"] == regime.values()
        # the resumed run's events are exactly the uninterrupted run's second half
        tail = [e.to_dict() for e in regime.events[at_split[preset]:]]
        assert out["events"] == tail, preset
    # the scenario really exercised state: a skip, plateau cuts ramping across the split
    _, reg = reference["plateau"]
    assert any(e.kind == "skip" for e in reg.events)
    idx = [i for i, e in enumerate(reg.events) if e.source == "plateau"]
    assert min(idx) < at_split["plateau"] <= max(idx)


def small(preset="cosine", total=20, controllers=None, groups=1):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    params = ([{"params": [model.weight], "name": "w"}, {"params": [model.bias], "name": "b"}]
              if groups == 2 else model.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    return model, Regime(opt, total_steps=total, preset=preset, controllers=controllers)


def run(model, regime, n):
    for _ in range(n):
        loss = model(torch.ones(4, 3)).pow(2).mean()
        loss.backward()
        regime.step(loss)


def test_load_from_other_configuration_raises():
    model, regime = small()
    run(model, regime, 3)
    state = regime.state_dict()
    for kwargs, what in [
        (dict(preset="constant"), "preset"),
        (dict(controllers=[Plateau()]), "controllers"),
        (dict(groups=2), "groups"),
    ]:
        _, other = small(**kwargs)
        with pytest.raises(ValueError, match=f"different configuration.*{what}"):
            other.load_state_dict(state)
    with pytest.raises(ValueError, match="not a Regime state dict"):
        regime.load_state_dict({"step_count": 3})


def test_load_with_new_total_steps_replans_explicitly():
    model, regime = small(total=20)
    run(model, regime, 10)
    state = regime.state_dict()
    lr_before = regime.values("group0")["lr"]
    _, longer = small(total=40)
    longer.load_state_dict(state)
    (ev,) = [e for e in longer.events if e.kind == "replan"]
    assert (ev.old, ev.new, ev.step) == (20, 40, 10)
    assert longer.total_steps == 40
    assert longer.values("group0")["lr"] == pytest.approx(lr_before)
    _, same = small(total=20)
    same.load_state_dict(state)
    assert not same.events and same.values() == regime.values()


def _observed_run(regime, model, start, stop, readings):
    """Steps ``start`` … ``stop`` - 1, observing ``readings[step]`` where it has one."""
    gen = torch.Generator().manual_seed(start)
    for step in range(start, stop):
        loss = model(torch.randn(4, 3, generator=gen)).pow(2).mean()
        loss.backward()
        regime.step(loss)
        if step + 1 in readings:
            regime.observe(val_loss=readings[step + 1])


def test_the_best_weights_survive_a_resume(tmp_path):
    """A checkpoint keeps the best-by-validation weights and value: after a resume, a worse
    reading is no new best, and ``restore_best`` gives back the weights from before it."""
    readings = {4: 0.9, 8: 0.5, 12: 0.7, 16: 0.8}  # best at step 8, before the split

    def build():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return model, Regime(opt, total_steps=20, preset="cosine", best_metric="val_loss")

    model, regime = build()
    _observed_run(regime, model, 0, 10, readings)
    best_weights = [b.clone() for b in regime.best_state()["params"]]
    torch.save({"model": model.state_dict(), "optimizer": regime.optimizer.state_dict(),
                "regime": regime.state_dict()}, tmp_path / "ckpt.pt")

    model, resumed = build()
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    model.load_state_dict(saved["model"])
    resumed.optimizer.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["regime"])
    _observed_run(resumed, model, 10, 20, readings)
    best = resumed.best_state()
    assert best is not None and (best["step"], best["value"]) == (8, 0.5)
    assert resumed.restore_best()
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), best_weights,
                                                         strict=True))


def test_a_best_by_another_metric_is_not_carried_into_a_resumed_run():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    first = Regime(torch.optim.SGD(model.parameters(), lr=0.1), total_steps=20,
                   preset="cosine", best_metric="val_loss")
    _observed_run(first, model, 0, 8, {4: 0.9, 8: 0.5})
    other = Regime(torch.optim.SGD(model.parameters(), lr=0.1), total_steps=20,
                   preset="cosine", best_metric="val_acc")
    other.load_state_dict(first.state_dict())
    assert other.best_state() is None


def test_saved_best_weights_of_another_shape_are_refused():
    def regime_of(width):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, width)
        regime = Regime(torch.optim.SGD(model.parameters(), lr=0.1), total_steps=20,
                        preset="cosine", best_metric="val_loss")
        return model, regime

    model, first = regime_of(2)
    _observed_run(first, model, 0, 4, {4: 0.9})
    _, other = regime_of(5)
    with pytest.raises(ValueError, match="saved best weights do not match"):
        other.load_state_dict(first.state_dict())
