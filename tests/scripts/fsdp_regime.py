"""FSDP2 helper, run under ``torchrun --nproc_per_node=2`` (gloo, CPU).

A small MLP wrapped with ``fully_shard`` (parameters and gradients are DTensor shards)
trains under a Regime with clipping and a controller that reacts to the gradient norm;
each rank sees different data and rank 1 alone a NaN loss at one step. Before each step
the full gradient is all-gathered (``full_tensor``) to give the norm the Regime must see;
after ``decide`` the clipped gradient is all-gathered again. At step 0 a single-process
copy of the model, on both ranks' data, gives the unsharded gradient's norm. The sharded
norm reduction is also checked alone on ``distribute_tensor`` shards and replicas, and the
micro-batch norms of gradient accumulation on the sharded model. Every rank writes
``OUT/rank<r>.json``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

from cadence.controllers.plateau import Plateau
from cadence.regime import Regime, distributed
from cadence.regime.measure import Measurer
from cadence.signals.core import counted_sq_norm, local_shards

STEPS, NAN_STEP, CLIP = 12, 5, 0.5


def data(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 * step + rank)
    x = torch.randn(8, 4, generator=gen) * (1 + rank)
    return x, torch.sin(x.sum(1, keepdim=True))


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


def full_norm(model: torch.nn.Module) -> float:
    grads = [p.grad.full_tensor() for p in model.parameters()]  # all-gathered
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


def sharded_reduction(rank: int) -> dict[str, float]:
    """Shards count once each, replicas once in all: the sum over ranks is the full norm."""
    mesh = init_device_mesh("cpu", (2,))
    torch.manual_seed(0)  # the same full tensors on both ranks
    full = [torch.randn(5, 3), torch.randn(4), torch.randn(1, 6)]
    placed = [distribute_tensor(full[0], mesh, [Shard(0)]),
              distribute_tensor(full[1], mesh, [Replicate()]),
              distribute_tensor(full[2], mesh, [Shard(0)])]  # rank 1's shard is empty
    local, counted = local_shards(placed)
    sq = distributed.sum_over_ranks(counted_sq_norm(local, counted).reshape(1))
    return {"sharded": float(sq.sqrt()),
            "full": float(torch.linalg.vector_norm(torch.cat([t.flatten() for t in full]))),
            "counted": counted}  # type: ignore[dict-item]


def accumulated(model: torch.nn.Module, opt: torch.optim.Optimizer, rank: int) -> dict:
    """Two micro-batches: the Measurer's micro-batch norms (from the one all-reduce) are
    the full increments' norms, its norm the full accumulated gradient's."""
    measurer = Measurer(opt, ["all"], [], accumulation_steps=2)
    want = []
    for k in range(2):
        x, y = data(rank, 100 + k)
        loss = loss_of(model, x, y)
        before = [p.grad.full_tensor() if p.grad is not None else 0.0
                  for p in model.parameters()]
        loss.backward()
        inc = [p.grad.full_tensor() - b for p, b in zip(model.parameters(), before, strict=True)]
        want.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in inc]))))
        measurer.add_micro_batch(loss)
    total = full_norm(model)
    m = measurer.measure(0, None)
    opt.zero_grad(set_to_none=True)
    return {"micro": m.context.micro_grad_norms, "micro_want": want,
            "norm": m.grad_norm, "norm_want": total}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    reference = copy.deepcopy(model)  # unsharded, on both ranks' data
    x0 = torch.cat([data(r, 0)[0] for r in range(2)])
    y0 = torch.cat([data(r, 0)[1] for r in range(2)])
    loss_of(reference, x0, y0).backward()
    ref_norm0 = float(torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in reference.parameters()])))
    for layer in (model[0], model[2]):
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=0.02)
    ctrl = Plateau(monitor="grad_norm", patience=0, factor=0.8, threshold=0.0)
    regime = Regime(opt, total_steps=STEPS, preset="cosine", controllers=[ctrl],
                    clip_norm=CLIP, snapshot_every=2)
    rec: dict = {"full_norm": [], "grad_norm": [], "clipped": [], "stepped": [], "lrs": [],
                 "ref_norm0": ref_norm0, "sharded": regime.measure.sharded,
                 "local_numel": [p.to_local().numel() for p in model.parameters()]}
    for i in range(STEPS):
        x, y = data(rank, i)
        loss = loss_of(model, x, y)
        if i == NAN_STEP and rank == 1:
            loss = loss * float("nan")
        loss.backward()
        rec["full_norm"].append(full_norm(model))
        stepped = regime.decide(loss)
        rec["grad_norm"].append(regime.signals["grad_norm"])
        if stepped:
            rec["clipped"].append(full_norm(model))  # the gradient the optimizer will use
            opt.step()
            regime.finish()
        opt.zero_grad(set_to_none=True)
        rec["stepped"].append(stepped)
        rec["lrs"].append(regime.values())
    rec["events"] = [e.to_dict() for e in regime.events]
    rec["reduction"] = sharded_reduction(rank)
    rec["accumulated"] = accumulated(model, opt, rank)
    (out / f"rank{rank}.json").write_text(json.dumps(rec, default=str))
    regime.close()
    dist.barrier()  # both ranks done before teardown (gloo could abort one mid-exit)
    dist.destroy_process_group()
    # gloo's threads can still abort the interpreter's own teardown ("terminate called
    # without an active exception", a few runs in a hundred here, the barrier or not): the
    # results are on disk, so leave without it
    os._exit(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
