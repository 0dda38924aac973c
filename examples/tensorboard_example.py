"""Send a Regime's knobs, signals and events to TensorBoard.

Run: python examples/tensorboard_example.py && tensorboard --logdir runs/tb
"""

from __future__ import annotations

import torch

import cadence
from cadence.integrations.tensorboard import TensorBoardSink


def main() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(cadence.param_groups(model, lr=1e-3, weight_decay=0.01))
    regime = cadence.Regime(optimizer, total_steps=500, log_dir="runs/tb/cadence")
    TensorBoardSink("runs/tb").attach(regime)
    x, y = torch.randn(1024, 20), torch.randn(1024, 1)
    for _ in range(500):
        idx = torch.randint(0, 1024, (64,))
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        loss.backward()
        regime.step(loss)
    regime.close()


if __name__ == "__main__":
    main()
