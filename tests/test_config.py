"""Regime configuration files: parsing TOML/YAML/JSON, validation, and error messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cadence.protocol import CONTROLLERS, Controller
from cadence.regime.config import ConfigError, load_config_file, resolve_config
from cadence.schedules.decay import Cosine
from cadence.schedules.warmup import Warmup


class Probe(Controller):
    """A stand-in controller registered for the duration of a test."""

    name = "probe"

    def __init__(self, patience: int = 10, factor: float = 0.5) -> None:
        if factor <= 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        self.patience, self.factor = patience, factor

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Probe) and vars(self) == vars(other)

    def propose(self, signals: Any, context: Any) -> list[Any]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@pytest.fixture(autouse=True)
def probe_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CONTROLLERS._items, "probe", Probe)


TOML = """
total_steps = 1000

[schedule]
kind = "warmup"
n = 100
[schedule.then]
kind = "cosine"
T_max = 900
floor = 0.1

[bounds]
lr = [1e-6, 0.5]
weight_decay = [0.0, 0.2]

[[controllers]]
name = "probe"
patience = 20

[[controllers]]
name = "probe"
params = { factor = 0.25 }
"""

YAML = """
total_steps: 1000
schedule:
  kind: warmup
  n: 100
  then: {kind: cosine, T_max: 900, floor: 0.1}
bounds:
  lr: [1.0e-6, 0.5]
  weight_decay: [0.0, 0.2]
controllers:
  - {name: probe, patience: 20}
  - name: probe
    params: {factor: 0.25}
"""

EXPECTED = {
    "total_steps": 1000,
    "schedule": Warmup(100, Cosine(900, 0.1)),
    "bounds": {"lr": (1e-6, 0.5), "weight_decay": (0.0, 0.2)},
    "controllers": [Probe(patience=20), Probe(factor=0.25)],
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_yaml_and_json_give_the_same_arguments(tmp_path: Path) -> None:
    pytest.importorskip("yaml", reason="YAML configs need the [config] extra (pyyaml)")
    as_json = json.dumps({
        "total_steps": 1000,
        "schedule": {"kind": "warmup", "n": 100,
                     "then": {"kind": "cosine", "T_max": 900, "floor": 0.1}},
        "bounds": {"lr": [1e-6, 0.5], "weight_decay": [0.0, 0.2]},
        "controllers": [{"name": "probe", "params": {"patience": 20}},
                        {"name": "probe", "params": {"factor": 0.25}}],
    })
    for name, text in (("c.toml", TOML), ("c.yaml", YAML), ("c.json", as_json)):
        resolved = resolve_config(load_config_file(write(tmp_path, name, text)), name)
        assert resolved == EXPECTED, name
        # the schedule is the real object: check its values against the closed form
        sched = resolved["schedule"]
        assert sched(50) == pytest.approx(0.5)
        assert sched(100 + 450) == pytest.approx(0.1 + 0.9 * 0.5)


def test_run_folder_config_json_round_trips(tmp_path: Path) -> None:
    """A run folder's config.json (with its informational keys) is a valid configuration."""
    recorded = {
        "preset": None, "total_steps": 1000,
        "controllers": [{"name": "probe", "params": {"patience": 20, "factor": 0.5}}],
        "schedule": Cosine(1000).to_dict(), "bounds": {"lr": [1e-6, 1.0]},
        "optimizer": {"class": "AdamW", "defaults": {"lr": 1e-3}},
        "groups": [{"name": "group0", "num_params": 10, "depth": None, "base": {"lr": 1e-3}}],
        "cadence_version": "0.1.0", "started": "2026-01-01T00:00:00",
    }
    recorded.pop("preset")  # presets are checked against the Regime's list, tested below
    resolved = resolve_config(recorded)
    assert set(resolved) == {"total_steps", "controllers", "schedule", "bounds"}
    assert resolved["schedule"] == Cosine(1000)
    assert resolved["controllers"] == [Probe(20, 0.5)]


def test_per_group_schedules_and_factory_kinds(tmp_path: Path) -> None:
    text = """
[schedule.body]
kind = "cosine"
T_max = 100
[schedule.head]
kind = "warmup_cosine"
total_steps = 100
warmup_steps = 10
"""
    resolved = resolve_config(load_config_file(write(tmp_path, "c.toml", text)))
    assert resolved["schedule"]["body"] == Cosine(100)
    head = resolved["schedule"]["head"]
    assert head(5) == pytest.approx(0.5)  # linear warmup 0 -> 1 over 10 steps
    assert head(10) == pytest.approx(1.0)


def test_controllers_as_named_tables(tmp_path: Path) -> None:
    text = "[controllers.probe]\npatience = 3\n"
    resolved = resolve_config(load_config_file(write(tmp_path, "c.toml", text)))
    assert resolved["controllers"] == [Probe(patience=3)]


def test_regime_table_is_used_when_present(tmp_path: Path) -> None:
    text = "[data]\nbatch = 32\n\n[regime]\ntotal_steps = 5\n"
    assert resolve_config(load_config_file(write(tmp_path, "c.toml", text))) == {"total_steps": 5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("totl_steps = 5", r"key 'totl_steps' is not allowed; allowed keys: .*total_steps"),
        ("total_steps = 0", r"total_steps = 0 is not allowed; allowed values: a positive"),
        ("total_steps = true", r"total_steps = True is not allowed"),
        ("[bounds]\nlearning_rate = [0, 1]",
         r"bounds.learning_rate is not allowed; allowed keys: lr, momentum"),
        ("[bounds]\nlr = [1, 0.5]",
         r"bounds.lr = \[1, 0.5\] is not allowed; allowed values: a pair .*0 <= lo <= hi"),
        ("[bounds]\nlr = 0.1", r"bounds.lr = 0.1 is not allowed; allowed values: a pair"),
        ("[schedule]\nkind = 'cosinus'",
         r"schedule.kind = 'cosinus' is not allowed; allowed values: .*cosine"),
        ("[schedule]\nkind = 'cosine'\nT_max = 0", r"schedule: .*T_max"),
        ("[schedule]\nkind = 'cosine'\nTmax = 10", r"schedule: unknown field"),
        ("[[controllers]]\nname = 'nope'",
         r"controllers\[0\].name = 'nope' is not allowed; allowed values: .*probe"),
        ("[[controllers]]\nname = 'probe'\npatiense = 3",
         r"controllers\[0\] \(probe\): parameter\(s\) patiense not allowed; "
         r"allowed parameters: patience, factor"),
        ("[[controllers]]\nname = 'probe'\nfactor = -1", r"controllers\[0\] \(probe\): factor"),
        ("[[controllers]]\npatience = 3", r"controllers\[0\] = .* not allowed"),
        ("controllers = 3", r"controllers = 3 is not allowed"),
        ("keep_lr = 1", r"keep_lr = 1 is not allowed; allowed values: true or false"),
        ("best_metric = ['val_loss', 'low']",
         r"best_metric = \['val_loss', 'low'\] is not allowed; allowed values: a metric name"),
        ("best_metric = 3", r"best_metric = 3 is not allowed"),
    ],
)
def test_invalid_configuration_names_key_and_allowed_values(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError, match=message) as info:
        resolve_config(load_config_file(path), source=str(path))
    assert str(path) in str(info.value)  # the file is named too
    assert isinstance(info.value, ValueError)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"suffix '.ini'; allowed: .toml, .yaml, .yml, .json"):
        load_config_file(write(tmp_path, "c.ini", "x=1"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"broken.toml: cannot parse"):
        load_config_file(write(tmp_path, "broken.toml", "total_steps = = 3"))
    with pytest.raises(ConfigError, match="top level must be a table"):
        load_config_file(write(tmp_path, "list.json", "[1, 2]"))
    with pytest.raises(TypeError, match="configuration must be a mapping"):
        resolve_config([("total_steps", 3)])  # type: ignore[arg-type]


# ---- with the real Regime -------------------------------------------------------------
def _model_and_opt(seed: int = 0) -> tuple[Any, Any]:
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return model, torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)


def test_regime_from_toml_file(tmp_path: Path) -> None:
    import cadence.regime as regime_mod

    text = """
preset = "cosine"
total_steps = 40
warmup_steps = 4
max_change = 1.05

[bounds]
lr = [1e-5, 0.01]

[guard]
lr_cut = 0.25
"""
    _, opt = _model_and_opt()
    regime = regime_mod.Regime.from_config(opt, write(tmp_path, "r.toml", text), seed=3)
    assert (regime.preset, regime.total_steps, regime.warmup_steps) == ("cosine", 40, 4)
    assert regime.arbiter.max_change == 1.05 and regime.seed == 3  # override from the call
    assert regime.user_bounds == {"lr": (1e-5, 0.01)}
    assert regime.guard is not None and regime.guard.lr_cut == 0.25
    # the cosine preset's lr: linear warmup over 4 steps, then cosine over the other 36
    assert regime.values("group0")["lr"] == pytest.approx(0.0)


def test_a_run_folder_config_repeats_the_run(tmp_path: Path) -> None:
    """Regime.from_config(opt, run/config.json) gives the same configuration and the same
    hyper-parameter trajectory as the recorded run."""
    import torch

    import cadence.regime as regime_mod

    def train(regime: Any, model: Any) -> list[float]:
        gen = torch.Generator().manual_seed(1)
        lrs = []
        for _ in range(12):
            x = torch.randn(16, 6, generator=gen)
            y = torch.randint(0, 3, (16,), generator=gen)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            regime.step(loss)
            lrs.append(regime.optimizer.param_groups[0]["lr"])
        return lrs

    model_a, opt_a = _model_and_opt()
    first = regime_mod.Regime(opt_a, total_steps=12, preset="auto", log_dir=tmp_path / "a",
                              bounds={"lr": (1e-6, 0.1)}, max_change=1.2, warmup_steps=3,
                              keep_lr=True, best_metric=("val_f1", "max"))
    lrs_a = train(first, model_a)
    first.close()

    model_b, opt_b = _model_and_opt()
    again = regime_mod.Regime.from_config(opt_b, tmp_path / "a" / "config.json")
    recorded = json.loads((tmp_path / "a" / "config.json").read_text())
    repeated = json.loads(json.dumps(again.config(), default=str))
    for cfg in (recorded, repeated):
        cfg.pop("started")
    assert repeated == recorded
    assert (recorded["keep_lr"], recorded["best_metric"]) == (True, ["val_f1", "max"])
    assert (again.keep_lr, again.best_metric) == (True, ("val_f1", "max"))
    assert train(again, model_b) == pytest.approx(lrs_a, rel=1e-12)
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_unknown_preset_lists_the_presets(tmp_path: Path) -> None:
    import cadence.regime  # noqa: F401
    path = write(tmp_path, "p.toml", 'preset = "fastest"')
    with pytest.raises(ConfigError, match=r"preset = 'fastest' is not allowed; allowed values: "
                                          r".*'auto'.*'cosine'"):
        resolve_config(load_config_file(path), str(path))
    path = write(tmp_path, "g.toml", "[guard]\nlr_cutt = 0.5")
    with pytest.raises(ConfigError, match=r"guard.lr_cutt is not allowed; allowed parameters: "
                                          r".*lr_cut"):
        resolve_config(load_config_file(path), str(path))
