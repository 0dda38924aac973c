"""``to_torch`` inside PyTorch Lightning and the Hugging Face ``Trainer`` (slow: imports).

Both trainers step the scheduler once per optimizer step; the lr seen at the start of
optimizer step ``t`` must be ``base_lr * schedule(t)``.
"""

from __future__ import annotations

import pytest
import torch

from cadence import schedules as S

pytestmark = pytest.mark.slow

BASE_LR = 0.1
STEPS = 12
SCHEDULE = S.warmup(3, then=S.Cosine(9, floor=0.1))
EXPECTED = [BASE_LR * SCHEDULE(t) for t in range(STEPS)]


def _data(n: int = 64) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)
    return torch.utils.data.TensorDataset(x, y)


def test_lightning_trainer_follows_the_schedule(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    seen: list[float] = []

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            seen.append(self.optimizers().param_groups[0]["lr"])
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=BASE_LR)
            sched = S.to_torch(opt, SCHEDULE)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    trainer = pl.Trainer(
        max_steps=STEPS, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(Module(), torch.utils.data.DataLoader(_data(), batch_size=4))
    assert seen == pytest.approx(EXPECTED, rel=1e-12)


def test_hugging_face_trainer_follows_the_schedule(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    seen: list[float] = []

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def forward(self, x, labels=None):
            out = self.net(x)
            return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}

    class Dataset(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.data = _data()

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i):
            x, y = self.data[i]
            return {"x": x, "labels": y}

    model = Model()
    opt = torch.optim.SGD(model.parameters(), lr=BASE_LR)

    class Record(transformers.TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            seen.append(opt.param_groups[0]["lr"])

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=STEPS, per_device_train_batch_size=4,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Dataset(),
        optimizers=(opt, S.to_torch(opt, SCHEDULE)), callbacks=[Record()],
    )
    trainer.train()
    assert seen == pytest.approx(EXPECTED, rel=1e-12)
