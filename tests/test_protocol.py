"""The part protocol: every registered controller and signal is a ``Controller`` / ``Signal``
that rebuilds from its recorded config and resumes exactly from its state.

For each registered name: build it with non-default arguments, check that they all show in
``get_config()``, that the registry rebuilds an equal part from that config (also after a
JSON round trip), and that state loaded into a fresh instance makes the same decisions
(controllers) or the same measurements (signals) as the original on the same next inputs.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import cadence.controllers  # noqa: F401  (registers the controllers)
import cadence.signals  # noqa: F401  (registers the signals)
from _signal_helpers import make_ctx
from cadence.protocol import (
    CONTROLLERS,
    SIGNALS,
    Context,
    Controller,
    GroupView,
    Part,
    Registry,
    Signal,
    TrialOutcome,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "cadence"

#: Non-default constructor arguments per registered name: a lost or renamed argument
#: shows up as a config that differs from these.
CONTROLLER_ARGS: dict[str, dict[str, Any]] = {
    "clara": {"damping": 2e-3, "c": 0.3, "beta": 0.5, "per_group": True, "name": "clara2"},
    "drift_response": {"rewarm_to": 0.4, "max_mult": 4.0, "stages": 3, "stage_steps": 2,
                       "hold_steps": 6, "decay_steps": 9, "cooldown": 11, "metric": "val",
                       "rebalance_wd": False},
    "hypergradient": {"hyper_lr": 0.05, "per_group": True, "name": "hyper2"},
    "lr_trials": {"factor": 3.0, "explore_until": 0.6, "window_fraction": 0.05,
                  "min_window": 5, "max_window": 90, "max_trials": 4},
    "validation": {"metric": "val", "patience": 3, "min_delta": 0.01,
                   "factor": 0.3, "wd_factor": 1.5, "max_cuts": 2, "max_wd_raises": 1},
    "learned": {"policy": str(SRC / "controllers" / "learned_policy.json"), "greedy": False,
                "seed": 3, "bounds": (0.2, 5.0), "decisions": 50, "name": "learned2"},
    "layerwise": {"mode": "grad", "alpha": 0.7, "max_spread": 3.0, "max_step": 1.03,
                  "beta": 0.8, "metric": "val", "metric_mode": "max", "tol": 0.05,
                  "patience": 3, "start_step": 2},
    "momentum": {"low": -0.2, "high": 0.4, "patience": 7, "step": 1.1, "range": 3.0,
                 "saturation_limit": 0.3},
    "noise_lr": {"bounds": (0.2, 1.5), "max_step": 1.04, "deadband": 0.02, "beta": 0.7},
    "one_cycle_momentum": {"total_steps": 40, "pct_start": 0.4, "anneal_strategy": "linear",
                           "three_phase": True, "base_momentum": 0.8, "max_momentum": 0.9},
    "plateau": {"monitor": "loss", "mode": "max", "factor": 0.5, "patience": 2,
                "threshold": 1e-3, "threshold_mode": "abs", "cooldown": 1,
                "min_lr": {"g0": 1e-5}, "eps": 1e-9, "check_every": 2, "hysteresis": 1.5,
                "nudge_factor": 1.5, "nudge_patience": 4, "max_nudges": 3},
    "salera": {"adapt_rate": 1e-3, "alpha": 0.05, "ph_rate": 0.05, "name": "salera2"},
    "scale": {"optimizer_kind": "sgd", "fan_in": 64.0, "trust": 2.0,
              "set_weight_decay": True, "urgent": False},
    "weight_decay": {"couple": False, "metric": "val", "widen": 0.05, "patience": 3,
                     "raise_factor": 1.5, "max_gap_mult": 3.0, "coupling_range": 5.0,
                     "rel_tol": 0.01},
}
SIGNAL_ARGS: dict[str, dict[str, Any]] = {
    "clara_path": {"c": 0.3, "beta": 0.5, "every": 2, "name": "cp"},
    "curvature": {"every": 3, "beta": 0.8},
    "drift": {"window": 12, "clip_z": 2.5, "cusum": {"k": 0.4}, "page_hinkley": {"delta": 0.3},
              "every": 2},
    "grad_alignment": {"beta": 0.8, "every": 2},
    "grad_noise": {"beta": 0.8, "beta_long": 0.95, "every": 2, "batch_size": 16},
    "grad_norm": {},  # no arguments
    "grad_norms": {"beta": 0.9, "every": 2, "name": "gn"},
    "hessian_eig": {"every": 2, "iters": 3, "tol": 1e-2, "preconditioned": False, "seed": 3},
    "loss": {"beta_short": 0.8, "beta_long": 0.95},
    "loss_trend": {"window": 10, "plateau_on": 2e-3, "plateau_off": 5e-3, "patience": 5,
                   "spike_z": 5.0, "t_min": 2.0, "beta": 0.9, "every": 2},
    "nonfinite": {},  # no arguments
    "salera_path": {"alpha": 0.05, "every": 2},
    "saturation": {"every": 3, "threshold": 0.9},
    "update_alignment": {"every": 2},
    "update_ratio": {"every": 2},
}
#: Parts that keep no state between steps (their state_dict is always empty).
STATELESS = {"clara", "hypergradient", "one_cycle_momentum", "grad_norm", "nonfinite"}

KINDS: dict[str, tuple[Registry, type[Part], dict[str, dict[str, Any]]]] = {
    "controller": (CONTROLLERS, Controller, CONTROLLER_ARGS),
    "signal": (SIGNALS, Signal, SIGNAL_ARGS),
}
PARTS = [(kind, name) for kind, (reg, _, _) in KINDS.items() for name in reg.names()]


def same(a: Any, b: Any) -> bool:
    """Deep equality that compares tensors by value (and NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and a.dtype == b.dtype
                and bool(torch.equal(a, b) or torch.allclose(a, b, rtol=0, atol=0,
                                                             equal_nan=True)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def build(registry: Registry, key: str, /, **kwargs: Any) -> Any:
    """The part registered as ``key`` built with ``kwargs`` (which may hold the part's own
    ``name=``: ``Registry.create`` takes its key positionally)."""
    return registry.create(key, **kwargs)


def create(registry: Registry, name: str, config: dict[str, Any]) -> Any:
    """``registry.create(name, **config)``, the way a configuration file rebuilds a part."""
    return registry.create(name, **config)


def overrides(kind: str, name: str) -> dict[str, Any]:
    table = KINDS[kind][2]
    assert name in table, (f"registered {kind} {name!r} has no row in the override table of "
                           "tests/test_protocol.py: add its non-default arguments")
    return copy.deepcopy(table[name])


# -- the protocol's shape ----------------------------------------------------------------

@pytest.mark.parametrize("kind,name", PARTS)
def test_registered_parts_follow_the_protocol(kind: str, name: str) -> None:
    registry, base, _ = KINDS[kind]
    part = registry.create(name)
    assert isinstance(part, base)
    assert type(part).name == name  # the class attribute is the registered name
    assert part.name == name
    assert isinstance(part.requires, tuple)
    assert all(isinstance(r, str) for r in part.requires)
    for signal, options in part.signal_options.items():
        assert signal in part.requires
        SIGNALS.create(signal, **options)  # the options are accepted by that signal
    if isinstance(part, Signal):
        assert isinstance(part.every, int) and part.every >= 1
    else:
        assert all(r in SIGNALS for r in part.requires), part.requires


def test_only_update_ratio_needs_after_step() -> None:
    """The Regime calls ``after_step`` only for signals that override it."""
    overriding = {name for name in SIGNALS.names()
                  if type(SIGNALS.create(name)).after_step is not Signal.after_step}
    assert overriding == {"update_ratio"}


def test_layerwise_requires_depend_on_mode() -> None:
    assert CONTROLLERS.create("layerwise").requires == ("update_ratio",)
    assert CONTROLLERS.create("layerwise", mode="grad").requires == ("grad_norms",)


def test_signal_options_follow_constructor_arguments() -> None:
    clara = CONTROLLERS.create("clara", c=0.3, beta=0.5)
    assert clara.signal_options == {"clara_path": {"c": 0.3, "beta": 0.5}}
    salera = CONTROLLERS.create("salera", alpha=0.05)
    assert salera.signal_options == {"salera_path": {"alpha": 0.05}}


# -- config round trip -------------------------------------------------------------------

@pytest.mark.parametrize("kind,name", PARTS)
def test_config_round_trip_keeps_every_argument(kind: str, name: str) -> None:
    registry = KINDS[kind][0]
    args = overrides(kind, name)
    default = registry.create(name).get_config()
    for key, value in args.items():
        assert key in default, f"{name}: {key!r} is not a recorded constructor argument"
        assert not same(default[key], value), f"{name}: override of {key!r} is the default"
    part = build(registry, name, **args)
    config = part.get_config()
    assert set(config) == set(default)  # every argument, defaults filled in
    for key, value in args.items():
        assert same(config[key], value), (name, key, config[key], value)
    rebuilt = type(part)(**config)
    assert same(rebuilt.get_config(), config)
    assert same(rebuilt.state_dict(), part.state_dict())
    scratch = part.get_config()
    scratch["__scratch__"] = 1  # get_config hands out a copy
    assert "__scratch__" not in part.get_config()
    by_name = create(registry, name, config)
    assert type(by_name) is type(part)
    assert same(by_name.get_config(), config)
    assert same(by_name.state_dict(), part.state_dict())


@pytest.mark.parametrize("kind,name", PARTS)
def test_config_is_json_serialisable(kind: str, name: str) -> None:
    registry = KINDS[kind][0]
    for part in (registry.create(name), build(registry, name, **overrides(kind, name))):
        text = json.dumps(part.get_config(), allow_nan=False)
        rebuilt = type(part)(**json.loads(text))
        assert json.dumps(rebuilt.get_config(), allow_nan=False) == text


def test_saturation_keeps_its_model_out_of_the_config() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh())
    sig = SIGNALS.create("saturation", model=model, every=3)
    assert sig.get_config() == {"every": 3, "threshold": 0.97, "name": "saturation"}
    model(torch.ones(4, 2))
    assert "saturation/1" in sig.measure(make_ctx(torch.optim.SGD(model.parameters(), 0.1)))
    sig.close()


# -- state round trip: controllers ---------------------------------------------------------

GROUPS = ("g0", "g1")


def controller_inputs(i: int) -> tuple[dict[str, float], Context]:
    """Synthetic signals and context of step ``i`` (the same for every caller)."""
    rng = random.Random(i)
    loss = 2.0 * 0.97**i + 0.05 * rng.random() + (1.0 if i >= 14 else 0.0)
    cos = -0.5 if (i // 8) % 2 == 0 else 0.6
    s: dict[str, float] = {
        "loss": loss, "loss_ema_short": loss, "loss_trend.mean": 0.9 * loss,
        "clara_path": 1.0 + rng.uniform(-0.3, 0.3), "clara_path.valid": 1.0,
        "update_alignment": rng.uniform(-1, 1), "update_alignment.valid": 1.0,
        "drift": 1.0 if i == 5 else 0.0, "drift.cusum": 7.5, "drift.ph": 3.0, "drift.z": 2.5,
        "grad_alignment.ema": cos + rng.uniform(-0.05, 0.05), "saturation.max": 0.1,
        "grad_noise": rng.uniform(0.5, 3.0), "grad_noise.long": 1.0, "grad_noise.valid": 1.0,
        "update_ratio.valid": 1.0,
    }
    for k, g in enumerate(GROUPS):
        s[f"clara_path/{g}"] = 1.0 + rng.uniform(-0.3, 0.3)
        s[f"update_alignment/{g}"] = rng.uniform(-1, 1)
        s[f"update_ratio.rel/{g}"] = (0.5, 2.0)[k] * (1 + 0.1 * rng.random())
        s[f"grad_norms.rms/{g}"] = (0.01, 0.05)[k] * (1 + 0.1 * rng.random())
        s[f"salera_path/{g}"] = rng.uniform(-3, 3)
    groups = [
        GroupView(name=g, num_params=10 * (k + 1), depth=k,
                  values={"lr": 0.13 * (k + 1), "momentum": 0.9, "beta2": 0.999,
                          "weight_decay": 0.01},
                  base={"lr": 0.1 * (k + 1), "momentum": 0.9, "beta2": 0.999,
                        "weight_decay": 0.01})
        for k, g in enumerate(GROUPS)
    ]
    metrics_step = i - i % 3
    metrics = {"val_loss": 1.0 + 0.05 * metrics_step, "val": 1.0 + 0.05 * metrics_step}
    # trials that ended (steering lr_trials): an up-move reverted at 6, a down-move kept at 12
    trials = tuple(TrialOutcome(k + 1, "lr_trials", "lr", f, end - 5, end, kept, -0.1)
                   for k, (f, end, kept) in enumerate([(2.0, 6, False), (0.5, 12, True)])
                   if end <= i)
    context = Context(step=i, total_steps=100, groups=groups, warmup_steps=0,
                      schedule_multiplier=dict.fromkeys(GROUPS, 0.5), metrics=metrics,
                      metrics_step=metrics_step, num_params=30, trials=trials)
    return s, context


@pytest.mark.parametrize("name", CONTROLLERS.names())
def test_controller_state_round_trip_gives_identical_proposals(name: str) -> None:
    args = overrides("controller", name)
    ctrl = build(CONTROLLERS, name, **args)
    config = ctrl.get_config()
    fresh_state = copy.deepcopy(ctrl.state_dict())
    proposed = 0
    for i in range(20):
        proposed += len(ctrl.propose(*controller_inputs(i)))
    assert proposed > 0, f"{name} never proposed: the drive does not exercise it"
    state = copy.deepcopy(ctrl.state_dict())
    if name not in STATELESS:
        assert not same(state, fresh_state), f"{name}: driving it left its state unchanged"
    clone = type(ctrl)(**config)
    clone.load_state_dict(state)
    for i in range(20, 32):
        signals, context = controller_inputs(i)
        assert ctrl.propose(signals, context) == clone.propose(*controller_inputs(i)), i
    assert same(ctrl.state_dict(), clone.state_dict())
    assert same(ctrl.get_config(), config)  # config is what was given, not what changed


# -- state round trip: signals -------------------------------------------------------------

class SignalRun:
    """A tiny two-group model trained with Adam; ``context(i)`` runs forward/backward."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(),
                                         torch.nn.Linear(8, 2))
        self.opt = torch.optim.Adam([
            {"params": self.model[0].parameters(), "name": "body"},
            {"params": self.model[2].parameters(), "name": "head"},
        ], lr=1e-2)
        gen = torch.Generator().manual_seed(1)
        self.x, self.y = torch.randn(64, 5, generator=gen), torch.randn(64, 2, generator=gen)

    def _loss(self) -> torch.Tensor:
        return (self.model(self.x) - self.y).square().mean()

    def context(self, i: int) -> Any:
        self.opt.zero_grad()
        loss = (self.model(self.x[i % 8::8]) - self.y[i % 8::8]).square().mean()
        loss.backward()
        return make_ctx(self.opt, i, float(loss.detach()), closure=self._loss)


def make_signal(name: str, config: dict[str, Any], model: torch.nn.Module) -> Signal:
    sig = build(SIGNALS, name, **config)
    if name == "saturation":  # the model is not configuration: attach it
        sig.attach(model)
    return sig


@pytest.mark.parametrize("name", SIGNALS.names())
def test_signal_state_round_trip_gives_identical_outputs(name: str) -> None:
    run = SignalRun()
    sig = make_signal(name, overrides("signal", name), run.model)
    config = sig.get_config()
    fresh_state = copy.deepcopy(sig.state_dict())
    for i in range(20):
        ctx = run.context(i)
        sig.update(sig.measure(ctx))
        run.opt.step()
        sig.after_step(ctx)
    state = copy.deepcopy(sig.state_dict())
    if name not in STATELESS:
        assert not same(state, fresh_state), f"{name}: driving it left its state unchanged"
    clone = make_signal(name, config, run.model)
    clone.load_state_dict(state)
    for i in range(20, 26):
        ctx = run.context(i)
        a = sig.update(sig.measure(ctx))
        b = clone.update(clone.measure(ctx))
        assert a, f"{name} measured nothing"
        assert same(a, b), (i, a, b)
        run.opt.step()
        sig.after_step(ctx)
        clone.after_step(ctx)
    assert same(sig.get_config(), config)
    if name == "saturation":
        sig.close()
        clone.close()


# -- layering ------------------------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_shared_math_and_checks_are_leaves() -> None:
    allowed = set(sys.stdlib_module_names) | {"torch", "numpy", "__future__"}
    for leaf in ("stats.py", "checks.py"):
        roots = {m.split(".")[0] for m in _imports(SRC / leaf)}
        assert roots <= allowed, (leaf, roots - allowed)


def test_controllers_and_signals_import_shared_math_from_the_leaves() -> None:
    for path in sorted((SRC / "controllers").glob("*.py")):
        bad = {m for m in _imports(path)
               if m.startswith(("cadence.optim", "cadence.signals._stats"))}
        assert not bad, (path.name, bad)
    for path in sorted((SRC / "signals").glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith("cadence.optim")}
        assert not bad, (path.name, bad)
