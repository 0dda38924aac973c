"""Build a Regime from a configuration file (TOML here; YAML and JSON work the same).

Run: python examples/config_example.py
"""

from __future__ import annotations

from pathlib import Path

import torch

import cadence

HERE = Path(__file__).parent


def main() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(cadence.param_groups(model, lr=1e-3, weight_decay=0.05))
    regime = cadence.Regime.from_config(optimizer, HERE / "config_example.toml",
                                        total_steps=1000, warmup_steps=50)  # overrides win
    print("preset:", regime.preset, "total_steps:", regime.total_steps)
    print("controllers:", [c.name for c in regime.controllers])
    x, y = torch.randn(256, 10), torch.randn(256, 1)
    for _ in range(1000):
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        regime.step(loss)
    print(f"final loss {loss.item():.4f}, {len(regime.events)} events")


if __name__ == "__main__":
    main()
