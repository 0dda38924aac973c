"""Sharded training (FSDP2's ``fully_shard``): the gradient norm, clipping, the guard and
the decisions are those of the full gradient, identical on every rank."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cadence.regime.measure import Measurer
from cadence.signals.core import counted_sq_norm, is_sharded, local_shards

SCRIPT = Path(__file__).parent / "scripts" / "fsdp_regime.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fsdp_on_cpu() -> bool:
    """fully_shard runs on CPU with gloo (torch >= 2.6 ships it as a public API)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_gloo_available()):
        return False
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
        from torch.distributed.tensor import DTensor  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not fsdp_on_cpu(),
                    reason="this torch build has no torch.distributed / gloo / fully_shard")
def test_fsdp_two_ranks_full_norm_same_decisions(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "RANK", "WORLD"))}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                         env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={free_port()}", str(SCRIPT), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["sharded"] and r1["sharded"]
    assert r0["local_numel"] != r1["local_numel"]  # really sharded (rank 1 holds less)
    # the unsharded gradient on both ranks' data is what FSDP holds, in shards
    assert r0["full_norm"][0] == pytest.approx(r0["ref_norm0"], rel=1e-5)
    for r in (r0, r1):
        # the Regime's norm is the all-gathered full gradient's, at every step
        for got, want in zip(r["grad_norm"], r["full_norm"], strict=True):
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-5)
        # clipping used one factor on every rank: the full clipped gradient has norm CLIP
        assert r["clipped"] == pytest.approx([0.5] * len(r["clipped"]), rel=1e-5)
    assert r0["grad_norm"][:5] == r1["grad_norm"][:5]  # bit-identical before the NaN
    assert r0["lrs"] == r1["lrs"] and r0["events"] == r1["events"]
    # rank 1's NaN loss made both ranks skip that step, with one guard event
    assert r0["stepped"] == r1["stepped"]
    assert r0["stepped"][5] is False and r0["stepped"].count(False) == 1
    skips = [e for e in r0["events"] if e["kind"] == "skip"]
    assert len(skips) == 1 and skips[0]["source"] == "guard"
    assert len([e for e in r0["events"] if e["source"] == "plateau"]) > 0
    # the reduction alone: Shard(0) counted on each rank, a Replicate on rank 0 only
    assert r0["reduction"]["counted"] == [True, True, True]
    assert r1["reduction"]["counted"] == [True, False, True]
    for r in (r0, r1):
        assert r["reduction"]["sharded"] == pytest.approx(r["reduction"]["full"], rel=1e-6)
        # gradient accumulation: micro-batch norms and the norm come from the same all-reduce
        acc = r["accumulated"]
        assert acc["micro"] == pytest.approx(acc["micro_want"], rel=1e-5)
        assert acc["norm"] == pytest.approx(acc["norm_want"], rel=1e-5)


def test_plain_tensors_take_the_unsharded_path():
    model = torch.nn.Linear(3, 2)
    assert not is_sharded(list(model.parameters()))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert Measurer(opt, ["g"], [], 1).sharded is False
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])]
    local, counted = local_shards(grads)  # outside torch.distributed: rank 0, all counted
    assert counted == [True, True] and local[0] is grads[0]
    assert float(counted_sq_norm(local, counted)) == 25.0
    assert float(counted_sq_norm(local, [False, False])) == 0.0
