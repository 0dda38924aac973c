"""An existing run folder is refused unless the run is resumed; resuming continues from the
folder's snapshot and appends to its files."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import cadence


def _train(regime: cadence.Regime, model: torch.nn.Module, start: int, stop: int) -> None:
    for step in range(start, stop):
        gen = torch.Generator().manual_seed(step)
        x = torch.randn(16, 4, generator=gen)
        loss = (model(x) - x.sum(1, keepdim=True)).square().mean()
        loss.backward()
        regime.step(loss)


def _new(tmp_path, **kw):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, cadence.Regime(opt, total_steps=300, log_dir=tmp_path / "run",
                                     snapshot_every=50, **kw)


def test_an_existing_run_folder_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, regime = _new(tmp_path)
    _train(regime, model, 0, 10)
    regime.close()
    with pytest.raises(FileExistsError, match="already holds a run.*resume=True"):
        _new(tmp_path)
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    cadence.Regime(torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1),
                   preset="constant", log_dir=tmp_path / "empty")
    with pytest.raises(ValueError, match="resume must be"):
        _new(tmp_path / "other", resume="yes")
    with pytest.raises(ValueError, match="needs log_dir"):
        cadence.Regime(torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1),
                       preset="constant", resume=True)


def test_resume_continues_from_the_snapshot_and_appends(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, regime = _new(tmp_path)
    _train(regime, model, 0, 120)  # snapshots at 50 and 100
    regime.close()
    lines = (tmp_path / "run" / "events.jsonl").read_text().splitlines()
    model2, resumed = _new(tmp_path, resume=True)
    assert resumed.step_count == 100  # the snapshot's step
    snap = torch.load(tmp_path / "run" / "snapshot.pt", weights_only=True)
    for p, saved in zip(model2.parameters(), snap["params"], strict=True):
        torch.testing.assert_close(p.detach(), saved)
    _train(resumed, model2, 100, 200)
    resumed.close()
    after = (tmp_path / "run" / "events.jsonl").read_text().splitlines()
    assert after[:len(lines)] == lines and len(after) >= len(lines)  # appended, not rewritten
    steps = [json.loads(x)["step"] for x in
             (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 200


def test_append_only_leaves_the_state_to_the_caller(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, regime = _new(tmp_path)
    _train(regime, model, 0, 60)
    regime.close()
    _, again = _new(tmp_path, resume="append")
    assert again.step_count == 0  # the integrations load their checkpoint's state themselves
