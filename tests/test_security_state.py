"""State files cadence reads cannot run code: every read uses ``weights_only=True``.

A crafted checkpoint whose pickle would create a marker file when unpickled must be
refused with a clear error, leaving no marker: the Hugging Face resume, a Regime going
back to the snapshot in its run folder, and a snapshot file given by path.
"""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch

import cadence
from cadence.regime import PRESETS, Regime


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears iff code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def crafted(path: Path, marker: Path) -> Path:
    torch.save({"version": 1, "fingerprint": {}, "payload": _Payload(marker)}, path)
    return path


def build(preset: str = "cosine", **kwargs) -> tuple[torch.nn.Module, Regime]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(cadence.param_groups(model, lr=1e-2))
    return model, Regime(opt, total_steps=30, preset=preset, snapshot_every=5, **kwargs)


def train(model: torch.nn.Module, regime: Regime, steps: int) -> None:
    for i in range(steps):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(i))
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        loss.backward()
        regime.step(loss)


def test_the_crafted_file_really_runs_code_without_weights_only(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    torch.load(crafted(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()  # so the refusals below are refusals of a real attack


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_presets_state_loads_with_weights_only(preset: str, tmp_path: Path) -> None:
    model, regime = build(preset)
    train(model, regime, 12)
    torch.save(regime.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    model2, fresh = build(preset)
    fresh.load_state_dict(state)
    assert fresh.values() == regime.values()


def test_snapshot_in_the_run_folder_restores_and_refuses_a_crafted_file(tmp_path: Path) -> None:
    model, regime = build(log_dir=tmp_path / "run")
    train(model, regime, 10)
    at_snapshot = [p.detach().clone() for p in model.parameters()]
    train(model, regime, 4)  # the snapshot of step 10 is taken before its update
    regime.load_snapshot()
    assert regime.step_count == 10
    assert all(torch.equal(a, b) for a, b in zip(at_snapshot, model.parameters(), strict=True))

    marker = tmp_path / "marker"
    crafted(tmp_path / "run" / "snapshot.pt", marker)
    with pytest.raises(ValueError, match="refuses to load it"):
        regime.load_snapshot()
    with pytest.raises(ValueError, match="refuses to load it"):
        regime.load_snapshot(tmp_path / "run" / "snapshot.pt")
    assert not marker.exists()


def test_hugging_face_resume_refuses_a_crafted_regime_file(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from cadence.integrations.hf import REGIME_FILE, CadenceTrainerCallback

    model, regime = build()
    callback = CadenceTrainerCallback()
    callback.regime = regime
    folder = tmp_path / "checkpoint-5"
    folder.mkdir()
    marker = tmp_path / "marker"
    crafted(folder / REGIME_FILE, marker)
    with pytest.raises(ValueError, match="refuses to load it"):
        callback._resume(folder)
    assert not marker.exists()
