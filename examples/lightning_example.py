"""PyTorch Lightning: hand the optimizer to a cadence Regime with one callback.

Run: python examples/lightning_example.py   (needs: pip install 'cadence[lightning,bench]')
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

import cadence
from cadence.bench.workloads import get_workload
from cadence.integrations.lightning import CadenceCallback


class Classifier(pl.LightningModule):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # no lr scheduler here: the Regime owns the learning rate
        return torch.optim.AdamW(cadence.param_groups(self.model, lr=3e-3, weight_decay=0.01))


def main() -> None:
    workload = get_workload("mnist1d-cnn")
    workload.prepare()
    x, y = workload.data["train"]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=50, shuffle=True
    )
    torch.manual_seed(0)
    module = Classifier(workload.make_model())
    callback = CadenceCallback(preset="auto")  # total_steps from the trainer
    trainer = pl.Trainer(max_epochs=20, accumulate_grad_batches=2, accelerator="cpu",
                         callbacks=[callback], default_root_dir="runs/lightning")
    trainer.fit(module, loader)
    print(f"test accuracy: {workload.evaluate(module.model, 'test')['acc']:.3f}")
    print(f"{len(callback.regime.events)} events; dashboard: "
          f"cadence report {callback.regime.log_dir}")


if __name__ == "__main__":
    main()
