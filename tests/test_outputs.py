"""Outputs read well: the run folder ends at the step reached, the dashboard card names
the controllers that acted, the Regime is a context manager, the CLI has --version and a
help per bench action, and the package is typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cadence
from cadence.cli import main
from cadence.report.run import load_run


def train(regime: cadence.Regime, model: torch.nn.Module, steps: int) -> None:
    for _ in range(steps):
        loss = model(torch.randn(4, 3)).pow(2).mean()
        loss.backward()
        regime.step(loss)


def test_context_manager_closes_and_the_last_step_is_recorded(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    with cadence.Regime(opt, total_steps=57, log_dir=tmp_path, metrics_every=10) as regime:
        train(regime, model, 57)
    assert regime.run_folder is not None
    assert regime.run_folder._metrics._fh is None  # closed
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()]
    assert steps == [10, 20, 30, 40, 50, 57]
    regime.close()  # a second close adds nothing
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6
    run = load_run(tmp_path)
    assert run.last_step() == 57
    assert run.controllers() == {"scale": 1, "lr_trials": 0, "validation": 0,
                                 "drift_response": 0}  # auto's own controllers


def test_close_after_a_recorded_step_writes_nothing_more(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 1)
    regime = cadence.Regime(torch.optim.SGD(model.parameters(), lr=0.1), preset="constant",
                            log_dir=tmp_path, metrics_every=5)
    train(regime, model, 10)
    regime.close()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_the_card_names_the_controllers_that_acted(tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    from cadence.report.dashboard import render_dashboard

    model = torch.nn.Linear(3, 1)
    with cadence.Regime(torch.optim.SGD(model.parameters(), lr=1e-4), total_steps=20,
                        log_dir=tmp_path) as regime:
        train(regime, model, 20)
    page = render_dashboard([tmp_path])
    assert "scale (1 change)" in page and "drift_response (idle)" in page
    assert "20 of 20" in page


def test_version_and_help_per_bench_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"cadence {cadence.__version__}")
    helps = {}
    for action in ("report", "list", "overhead", "run"):
        with pytest.raises(SystemExit):
            main(["bench", action, "--help"])
        helps[action] = capsys.readouterr().out
        assert helps[action].startswith(f"usage: cadence bench {action}")
    assert "--repeats" in helps["overhead"] and "--repeats" not in helps["report"]
    assert "--db" in helps["report"] and "--suite" not in helps["report"]


def test_the_package_is_typed() -> None:
    assert (Path(cadence.__file__).parent / "py.typed").is_file()


def test_trainer_logs_name_a_shared_knob_once() -> None:
    from cadence.integrations._trainer import KnobLog

    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(4)])
    groups = cadence.param_groups(model, lr=1e-3, weight_decay=0.1, layer_decay=0.8)
    regime = cadence.Regime(torch.optim.AdamW(groups), total_steps=100, clip_norm=1.0)
    log = KnobLog()
    keys = set(log(regime))
    names = regime.group_names
    assert len(names) == 8
    assert {"cadence/momentum", "cadence/beta2", "cadence/clip_norm", "cadence/events"} <= keys
    assert {f"cadence/lr/{g}" for g in names} <= keys  # layer decay: the rates differ
    assert len(keys) == 2 * len(names) + 4  # lr and weight_decay per group; 41 before
    for g in regime.optimizer.param_groups[:1]:
        g["betas"] = (0.5, g["betas"][1])  # once a shared knob differs, it is split for good
    assert "cadence/momentum/layer0.decay" in log(regime)
    for g in regime.optimizer.param_groups[:1]:
        g["betas"] = (0.9, g["betas"][1])
    assert "cadence/momentum" not in log(regime)
