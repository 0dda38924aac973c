"""Distributed helper, run under ``torchrun --nproc_per_node=2`` (gloo, CPU).

Each rank trains the same tiny model on *different* data with a Regime whose controllers
react to the (all-reduced) signals; rank 1 alone sees a NaN loss at one step. Every rank
writes ``OUT/rank<r>.json`` with its lr trajectory, skip results and events, and all ranks
share ``OUT/log`` as log_dir (only rank 0 may write there).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from cadence.controllers.plateau import Plateau
from cadence.regime import Regime

STEPS, NAN_STEP = 16, 5


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    ctrl = Plateau(monitor="grad_norm", patience=0, factor=0.8, threshold=0.0)
    regime = Regime(opt, total_steps=STEPS, preset="cosine", controllers=[ctrl],
                    log_dir=out / "log", metrics_every=4)
    gen = torch.Generator().manual_seed(1234 + 77 * rank)  # different data per rank
    lrs, stepped = [], []
    for i in range(STEPS):
        x = torch.randn(8, 4, generator=gen) * (1 + rank)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        if i == NAN_STEP and rank == 1:
            loss = loss * float("nan")
        loss.backward()
        stepped.append(regime.step(loss))
        lrs.append(regime.values())
        if i % 5 == 4:
            regime.observe(val_loss=float(rank))  # averaged over ranks: 0.5 on both
    record = {
        "lrs": lrs,
        "stepped": stepped,
        "events": [e.to_dict() for e in regime.events],
        "metrics": regime.metrics,
        "signals": regime.signals,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record, default=str))
    regime.close()
    dist.barrier()  # both ranks done before teardown (gloo could abort one mid-exit)
    dist.destroy_process_group()
    # gloo's threads can still abort the interpreter's own teardown ("terminate called
    # without an active exception", a few runs in a hundred here, the barrier or not): the
    # results are on disk, so leave without it
    os._exit(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
