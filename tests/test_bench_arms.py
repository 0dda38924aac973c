"""Every controller as a bench arm: each arm builds its optimizer and Regime through the
public surface, with the controller it names, and the controller acts (fast tests)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from cadence.bench.methods import METHODS, RunContext, get_method, method_grid
from cadence.bench.methods.cadence_presets import CONTROLLER_ARMS
from cadence.bench.suites import CONTROLLER_ARMS as SUITE_ARMS
from cadence.bench.suites import get_suite

EXPECTED = {
    "cadence-momentum": "MomentumControl",
    "cadence-weight-decay": "WeightDecayControl",
    "cadence-noise-lr": "NoiseAdaptiveLR",
    "cadence-layerwise": "LayerwiseLR",
    "cadence-layerwise-ld0.8": "LayerwiseLR",
    "cadence-salera": "SaleraController",
    "cadence-clara-sgd": "ClaraController",
    "cadence-plateau-val": "Plateau",
    "cadence-onecycle": "OneCycleMomentum",
}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))


def _build(name: str, lr: float | None = None, steps: int = 50):
    m = get_method(name)
    model = _model()
    return model, m.build(model, m.default_lr if lr is None else lr, RunContext(total_steps=steps))


def test_every_arm_is_registered_and_in_the_standard_suite() -> None:
    names = {a.name for a in CONTROLLER_ARMS}
    assert set(EXPECTED) <= names and set(SUITE_ARMS) == names
    assert names <= set(METHODS)
    for plan in get_suite("standard").plans:
        assert names <= set(plan.methods), plan.workload


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_arm_runs_its_controller_on_the_right_optimizer(name: str) -> None:
    model, trainer = _build(name)
    kinds = [type(c).__name__ for c in trainer.regime.controllers]
    assert EXPECTED[name] in kinds
    sgd = name == "cadence-clara-sgd"
    assert isinstance(trainer.optimizer, torch.optim.SGD if sgd else torch.optim.AdamW)
    assert get_method(name).family == ("sgd" if sgd else "adam")
    assert method_grid(get_method(name))[0] == pytest.approx(1e-4 if sgd else 1e-5)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    before = [p.detach().clone() for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            trainer.step(loss)
    assert trainer.regime.step_count == 3
    after = list(model.parameters())
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, after, strict=True))


def test_layerwise_arms_with_and_without_static_layer_decay() -> None:
    _, flat = _build("cadence-layerwise", lr=1e-3)
    _, decayed = _build("cadence-layerwise-ld0.8", lr=1e-3)
    base = "cadence_base_lr"
    assert all(g[base] == pytest.approx(1e-3) for g in flat.optimizer.param_groups)
    assert len(flat.optimizer.param_groups) >= 3  # per-layer groups, equal rates
    lrs = sorted({round(g[base], 12) for g in decayed.optimizer.param_groups})
    assert lrs[-1] == pytest.approx(1e-3) and lrs[0] == pytest.approx(1e-3 * 0.8**2)


def test_plateau_arm_cuts_on_a_rising_validation_loss() -> None:
    model, trainer = _build("cadence-plateau-val", lr=1e-2, steps=400)
    params = list(model.parameters())
    lr0 = trainer.current_lr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(12):
            trainer.observe({"loss": 1.0 + 0.1 * k, "acc": 0.5 + 0.01 * k})  # acc improves
            for _ in range(5):
                loss = sum((p**2).sum() for p in params)
                loss.backward()
                trainer.step(loss)
    cuts = [e for e in trainer.regime.events if e.source == "plateau" and e.knob == "lr"]
    assert cuts and cuts[0].new < cuts[0].old
    assert trainer.current_lr() < 0.2 * lr0  # a ×0.1 cut, ramped in by the arbiter


def test_onecycle_arm_cycles_beta1_with_its_lr() -> None:
    model, trainer = _build("cadence-onecycle", lr=1e-2, steps=100)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    seen = []

    def values_used(opt: torch.optim.Optimizer, *_: object) -> None:
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))

    trainer.optimizer.register_step_pre_hook(values_used)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(100):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            trainer.step(loss)
    lrs, betas = zip(*seen, strict=True)
    peak = max(range(100), key=lrs.__getitem__)
    assert betas[peak] == min(betas) == pytest.approx(0.85, abs=1e-3)
    assert max(lrs) == pytest.approx(1e-2) and betas[0] == 0.95 and betas[-1] > 0.94


@pytest.mark.parametrize(("primary", "higher", "metric"), [
    ("loss", False, "val_loss"), ("acc", True, "val_acc"), ("mse", False, "val_loss"),
])
def test_auto_hands_back_the_weights_best_by_the_workloads_own_metric(
        primary: str, higher: bool, metric: str) -> None:
    """The bench observes loss and accuracy everywhere; on a workload judged by its loss
    (logreg) the best weights must be the loss's, not the accuracy's (which restored weights
    4 – 120× worse than the final ones there). A workload whose metric is not observed
    (``mse``) keeps the default: ``val_loss`` when no accuracy is observed."""
    model = _model()
    ctx = RunContext(total_steps=60, primary=primary, higher_is_better=higher)
    trainer = get_method("cadence-auto").build(model, 1e-3, ctx)
    params = list(model.parameters())
    readings = [(0.9, 0.30), (0.6, 0.40), (0.5, 0.35)]  # loss best last, accuracy at 2nd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for loss_v, acc_v in readings:
            for _ in range(5):
                loss = sum((p**2).sum() for p in params)
                loss.backward()
                trainer.step(loss)
            trainer.observe({"loss": loss_v} if primary == "mse"
                            else {"loss": loss_v, "acc": acc_v})
    best = trainer.regime.best_state()
    assert best is not None and best["metric"] == metric
    assert best["step"] == (10 if metric == "val_acc" else 15)


def test_arms_that_keep_final_weights_still_keep_them() -> None:
    _, trainer = _build("cadence-cosine")
    assert trainer.regime.best is None
