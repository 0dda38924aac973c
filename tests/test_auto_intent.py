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


def _observe_disagreeing(regime: cadence.Regime, model: nn.Module) -> dict[str, int]:
    """Train 300 steps, observing every 50 a loss that is best at step 250 and an accuracy
    that is best at step 100 (a coarse metric that disagrees with the objective, as a
    logistic regression's accuracy does with its loss); returns the two best steps."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 64, generator=gen), torch.randn(32, 10, generator=gen)
    losses = {50: 0.9, 100: 0.8, 150: 0.7, 200: 0.6, 250: 0.5, 300: 0.55}
    accs = {50: 0.30, 100: 0.34, 150: 0.33, 200: 0.33, 250: 0.32, 300: 0.33}
    for i in range(1, 301):
        loss = (model(x) - y).square().mean()
        loss.backward()
        regime.step(loss)
        if i in losses:
            regime.observe(val_loss=losses[i], val_acc=accs[i])
    return {"loss": 250, "acc": 100}


@pytest.mark.parametrize("best_metric, expected", [
    (None, "acc"), ("val_loss", "loss"), (("val_loss", "min"), "loss"), ("val_acc", "acc"),
])
def test_best_metric_picks_the_weights_restore_best_gives_back(
        best_metric: str | tuple[str, str] | None, expected: str) -> None:
    """By default the best weights are those of the best ``val_acc``; ``best_metric`` names
    the metric the user selects on (``val_loss``: minimised, as its name ends in "loss")."""
    torch.manual_seed(0)
    model = Net()
    regime = cadence.Regime(torch.optim.AdamW(model.parameters(), lr=1e-3), total_steps=300,
                            keep_lr=True, best_metric=best_metric)
    best_steps = _observe_disagreeing(regime, model)
    best = regime.best_state()
    assert best is not None and best["step"] == best_steps[expected]
    assert best["metric"] == f"val_{expected}"


def test_naming_best_metric_keeps_best_weights_under_any_preset() -> None:
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    plain = cadence.Regime(opt, total_steps=300, preset="cosine")
    assert plain.best_state() is None and not plain.restore_best()
    regime = cadence.Regime(torch.optim.AdamW(model.parameters(), lr=1e-3), total_steps=300,
                            preset="cosine", best_metric=("val_f1", "max"))
    gen = torch.Generator().manual_seed(0)
    for i, f1 in enumerate([0.2, 0.5, 0.4]):
        loss = model(torch.randn(8, 64, generator=gen)).square().mean()
        loss.backward()
        regime.step(loss)
        regime.observe(val_f1=f1)
        if i == 1:
            kept = [p.detach().clone() for p in model.parameters()]
    best = regime.best_state()
    assert best is not None and (best["step"], best["value"]) == (2, pytest.approx(0.5))
    assert regime.restore_best()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), kept, strict=True))


@pytest.mark.parametrize("bad, error", [
    (3, TypeError), (("val_loss",), TypeError), ("", ValueError),
    (("val_loss", "lowest"), ValueError),
])
def test_a_bad_best_metric_is_refused(bad: object, error: type[Exception]) -> None:
    model = Net()
    with pytest.raises(error, match="best_metric"):
        cadence.Regime(torch.optim.AdamW(model.parameters(), lr=1e-3), total_steps=10,
                       best_metric=bad)  # type: ignore[arg-type]


def test_a_typo_of_the_best_metric_is_refused_by_observe() -> None:
    model = Net()
    regime = cadence.Regime(torch.optim.AdamW(model.parameters(), lr=1e-3), total_steps=10,
                            preset="cosine", best_metric="val_bleu")
    with pytest.raises(ValueError, match="did you mean 'val_bleu'"):
        regime.observe(val_bleuu=0.3)
