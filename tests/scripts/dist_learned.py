"""Distributed helper for the learned controller, run under ``torchrun --nproc_per_node=2``.

Each rank trains the same tiny model on *different* data under ``preset="learned"`` with a
second, sampling ``LearnedLR`` (policy file ``argv[2]``, seeded): decisions must come out
identical on both ranks because they are taken from the all-reduced signals. Every rank
writes ``OUT/rank<r>.json`` with its lr trajectory and events.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from cadence.controllers.learned import LearnedLR
from cadence.regime import Regime

STEPS = 40


def main(out: Path, policy: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sampler = LearnedLR(policy=policy, greedy=False, seed=5, decisions=30, name="sampler")
    regime = Regime(opt, total_steps=STEPS, preset="learned", controllers=[sampler])
    for c in regime.controllers:
        if isinstance(c, LearnedLR) and c.name == "learned":
            c.policy_path = policy
    gen = torch.Generator().manual_seed(1234 + 77 * rank)  # different data per rank
    lrs = []
    for i in range(STEPS):
        x = torch.randn(8, 4, generator=gen) * (1 + rank)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        loss.backward()
        regime.step(loss)
        lrs.append(regime.values())
        if i % 5 == 4:
            regime.observe(val_loss=float(rank))
    record = {"lrs": lrs, "events": [e.to_dict() for e in regime.events]}
    (out / f"rank{rank}.json").write_text(json.dumps(record, default=str))
    regime.close()
    dist.barrier()  # both ranks done before teardown (gloo could abort one mid-exit)
    dist.destroy_process_group()
    # gloo's threads can still abort the interpreter's own teardown ("terminate called
    # without an active exception", a few runs in a hundred here, the barrier or not): the
    # results are on disk, so leave without it
    os._exit(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
