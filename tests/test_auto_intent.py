"""``auto`` keeps the user's intent (ratios, fine-tuning rates, keep_lr) and answers
validation: overfitting cuts the lr, the best-by-validation weights come back."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import cadence
from cadence.controllers.validation import ValidationResponse
from cadence.protocol import Context, GroupView


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(64, 64) for _ in range(3))
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = torch.relu(b(x))
        return self.head(x)


def _lrs(regime: cadence.Regime, step_lr_at: int = 100) -> dict[str, float]:
    return {n: regime.knobs.base(n, "lr") * regime.knobs.multiplier(n)
            for n in regime.group_names}


def _train(regime: cadence.Regime, model: nn.Module, steps: int) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(16, 64, generator=gen)
        loss = model(x).square().mean()
        loss.backward()
        regime.step(loss)


def test_layer_decay_ratios_survive_auto() -> None:
    """The README's example: ``layer_decay=0.8`` + ``auto`` keeps every ratio between
    groups, although the scale rule replaces the (far too small) lr."""
    torch.manual_seed(0)
    model = Net()
    groups = cadence.param_groups(model, lr=1e-6, weight_decay=0.1, layer_decay=0.8)
    before = {g["name"]: g["lr"] for g in groups}
    regime = cadence.Regime(torch.optim.AdamW(groups), total_steps=200)
    with pytest.warns(UserWarning, match="keep_lr=True"):
        _train(regime, model, 30)
    after = _lrs(regime)
    ref = next(iter(before))
    assert after[ref] > 100 * before[ref]  # replaced
    for name, lr in before.items():
        assert after[name] / after[ref] == pytest.approx(lr / before[ref], rel=1e-9), name


def test_keep_lr_keeps_a_fine_tuning_rate() -> None:
    torch.manual_seed(0)
    model = Net()
    regime = cadence.Regime(torch.optim.AdamW(model.parameters(), lr=2e-5), total_steps=200,
                            keep_lr=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no replacement, so no warning
        _train(regime, model, 30)
    assert not [e for e in regime.events if e.source == "scale"]
    assert _lrs(regime)["group0"] == pytest.approx(2e-5)
    assert "scale" not in [c.name for c in regime.controllers]


def test_a_pretrained_group_is_never_raised_by_the_rule() -> None:
    torch.manual_seed(0)
    model = Net()
    groups = cadence.param_groups(
        model, lr=2e-5, groups={"body": {"pattern": "blocks", "pretrained": True},
                                "head": {"pattern": "head", "lr": 1e-4}})
    regime = cadence.Regime(torch.optim.AdamW(groups), total_steps=200)
    _train(regime, model, 30)
    assert not [e for e in regime.events if e.source == "scale"]
    lrs = _lrs(regime)
    assert all(lr <= 1e-4 * (1 + 1e-9) for lr in lrs.values()), lrs


def test_a_pretrained_mark_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="pretrained"):
        cadence.param_groups(Net(), lr=1e-3, groups={"b": {"pattern": "blocks",
                                                             "pretrained": "yes"}})


def _context(step: int, val: float, metrics_step: int) -> Context:
    g = GroupView("g", {"lr": 1e-3, "weight_decay": 0.01}, {"lr": 1e-3, "weight_decay": 0.01},
                  10)
    return Context(step=step, total_steps=1000, groups=[g], metrics={"val_loss": val},
                   metrics_step=metrics_step)


def test_overfitting_cuts_the_lr_and_a_growing_gap_raises_weight_decay() -> None:
    ctrl = ValidationResponse(patience=2)
    out = []
    # validation 1.0 (best, late enough not to be immediate), then worse twice while
    # training keeps falling
    for i, (val, train) in enumerate([(1.0, 0.9), (1.05, 0.7), (1.1, 0.5)]):
        out = ctrl.propose({"loss_ema_short": train}, _context(300 + 100 * i, val, 300 + 100 * i))
    knobs = {p.knob: p for p in out}
    assert knobs["lr"].factor == 0.5 and "overfitting" in knobs["lr"].reason
    assert knobs["weight_decay"].factor == 2.0 and "gap grew" in knobs["weight_decay"].reason


def test_validation_and_training_worsening_together_is_not_overfitting() -> None:
    ctrl = ValidationResponse(patience=2)
    for i, (val, train) in enumerate([(1.0, 0.5), (1.2, 0.7), (1.4, 0.9)]):
        assert ctrl.propose({"loss_ema_short": train}, _context(100 * i, val, 100 * i)) == []


def test_validation_rises_never_raise_the_lr_in_auto() -> None:
    """``observe`` with a validation loss that keeps rising: ``auto`` may cut the lr,
    never raises it or re-warms in answer, and keeps the best weights."""
    torch.manual_seed(0)
    model = Net()
    regime = cadence.Regime(torch.optim.AdamW(model.parameters(), lr=1e-3), total_steps=400,
                            keep_lr=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 64, generator=gen)
    y = torch.randn(32, 10, generator=gen)
    best_params = None
    for i in range(400):
        loss = (model(x) - y).square().mean()
        loss.backward()
        regime.step(loss)
        if i % 40 == 39:
            regime.observe(val_loss=1.0 + 0.1 * (i // 40))  # worse each time
            if i == 39:
                best_params = [p.detach().clone() for p in model.parameters()]
    responses = [e for e in regime.events if e.source == "validation"]
    assert responses and all(e.new < e.old for e in responses if e.knob == "lr")
    assert not [e for e in regime.events if e.kind == "drift" and e.step > 40]
    best = regime.best_state()
    assert best is not None and best["step"] == 40 and best["value"] == pytest.approx(1.0)
    assert regime.restore_best()
    assert best_params is not None
    for p, q in zip(model.parameters(), best_params, strict=True):
        assert torch.equal(p, q)


def test_the_scale_warning_names_the_callers_line() -> None:
    import warnings

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    regime = cadence.Regime(opt, total_steps=100)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model(torch.randn(4, 8)).pow(2).mean().backward()
        regime.step(model(torch.randn(4, 8)).pow(2).mean())
    ours = [w for w in seen if "scale-aware default" in str(w.message)]
    assert ours and all(w.filename == __file__ for w in ours)
