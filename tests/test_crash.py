"""Crash consistency: a run killed with SIGKILL at a random step leaves a run folder whose
config is whole, whose events and metrics are valid line by line, and whose snapshot a
fresh Regime can go back to (issue 11)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
import crash_run  # noqa: E402


@pytest.mark.parametrize("kill_at", [87])
def test_a_killed_run_leaves_a_folder_that_can_be_read_and_resumed(tmp_path, kill_at):
    folder = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "crash_run.py"), str(folder),
                           str(kill_at)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # really killed, no clean exit
    config = json.loads((folder / "config.json").read_text())
    assert config["total_steps"] == 400
    assert not (folder / "config.json.tmp").exists()
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "metrics" not in m] == list(range(1, kill_at + 1))
    for line in (folder / "events.jsonl").read_text().splitlines():
        json.loads(line)
    model, regime = crash_run.build(None)
    regime.load_snapshot(folder / "snapshot.pt")
    last_snapshot = (kill_at - 1) // 10 * 10
    assert regime.step_count == last_snapshot
    assert all(torch.isfinite(p).all() for p in model.parameters())
