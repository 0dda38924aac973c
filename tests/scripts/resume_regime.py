"""Exact-resume helper: train a tiny model under a Regime, checkpoint, continue elsewhere.

Run as ``python tests/scripts/resume_regime.py DIR``: for every preset, loads
``DIR/<preset>-ckpt.pt`` (model, optimizer and regime state after ``SPLIT`` steps) into
freshly built objects, trains to ``TOTAL`` steps and saves the parameters to
``DIR/<preset>-final.pt``. tests/test_resume.py compares them with an uninterrupted run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from cadence.controllers.plateau import Plateau
from cadence.regime import Regime

PRESETS = ("constant", "cosine", "plateau", "auto", "clara", "hypergradient")
TOTAL, SPLIT = 14, 7


def build(preset: str) -> tuple[torch.nn.Module, torch.optim.Optimizer, Regime]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "name": "body"},
            {"params": model[2].parameters(), "name": "head", "lr": 0.02},
        ],
        lr=0.01,
    )
    extra = [Plateau(monitor="val_loss", patience=1, factor=0.5)] if preset == "plateau" else []
    regime = Regime(opt, total_steps=TOTAL, preset=preset, controllers=extra, snapshot_every=3,
                    clip_norm=5.0)
    return model, opt, regime


def train(model: torch.nn.Module, regime: Regime, start: int, stop: int) -> None:
    for i in range(start, stop):
        g = torch.Generator().manual_seed(100 + i)
        x = torch.randn(16, 4, generator=g)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        if i == 2:
            loss = loss * float("nan")  # a skipped step before the checkpoint
        loss.backward()
        regime.step(loss)
        regime.observe(val_loss=1.0)  # flat metric: the plateau controller keeps cutting


def main(folder: Path) -> None:
    torch.set_num_threads(1)
    for preset in PRESETS:
        model, opt, regime = build(preset)
        ckpt = torch.load(folder / f"{preset}-ckpt.pt", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        regime.load_state_dict(ckpt["regime"])
        train(model, regime, SPLIT, TOTAL)
        torch.save({"params": [p.detach() for p in model.parameters()],
                    "events": [e.to_dict() for e in regime.events],
                    "values": regime.values()}, folder / f"{preset}-final.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
