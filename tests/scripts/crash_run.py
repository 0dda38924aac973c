"""Crash helper: train a tiny model under a Regime with a run folder and kill this very
process with SIGKILL (no cleanup, no flush at exit) at the step given on the command line.

Run as ``python tests/scripts/crash_run.py FOLDER STEP``; tests/test_crash.py checks what
the folder holds afterwards.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

import cadence


def build(folder: Path | None) -> tuple[torch.nn.Module, cadence.Regime]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.AdamW(cadence.param_groups(model, lr=1e-2))
    regime = cadence.Regime(opt, total_steps=400, log_dir=folder, snapshot_every=10,
                            metrics_every=1)
    return model, regime


def main(folder: Path, kill_at: int) -> None:
    model, regime = build(folder)
    for i in range(400):
        if i == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        x = torch.randn(32, 4, generator=torch.Generator().manual_seed(i))
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        loss.backward()
        regime.step(loss)
        regime.observe(val_loss=float(loss))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
