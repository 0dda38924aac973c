"""Distributed: identical decisions on every rank from one packed all-reduce; rank 0 logs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cadence.regime import distributed as rd

SCRIPT = Path(__file__).parent / "scripts" / "dist_regime.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_ranks_take_identical_decisions(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "RANK", "WORLD"))}
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={free_port()}", str(SCRIPT), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["lrs"] == r1["lrs"]  # identical hyper-parameter trajectories
    assert r0["events"] == r1["events"]
    assert r0["stepped"] == r1["stepped"]
    # rank 1's NaN made *both* ranks skip that step
    assert r0["stepped"][5] is False and sum(not s for s in r0["stepped"]) == 1
    skips = [e for e in r0["events"] if e["kind"] == "skip"]
    assert len(skips) == 1 and skips[0]["signals"]["nonfinite"] == 0.5
    assert len([e for e in r0["events"] if e["source"] == "plateau"]) > 0
    assert r0["metrics"] == {"val_loss": 0.5} == r1["metrics"]
    # written once, by rank 0
    lines = (tmp_path / "log" / "events.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == r0["events"]


def test_reduce_mean_without_process_group():
    assert not rd.is_distributed() and rd.world_size() == 1 and rd.rank() == 0
    out = rd.reduce_mean({"b": torch.tensor(2.5), "a": 1.0})
    assert out == {"a": 1.0, "b": 2.5}
    packed = rd.pack({"b": 2.0, "a": torch.tensor(1.0)}, torch.device("cpu"))
    assert packed.dtype == torch.float64 and packed.tolist() == [1.0, 2.0]
