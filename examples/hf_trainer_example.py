"""Hugging Face Trainer: a cadence Regime as a TrainerCallback, on a tiny local model.

Nothing is downloaded: the model is a small BERT built from a config, trained on a toy
task (is the sequence's first token smaller than its last?). Run:
    python examples/hf_trainer_example.py     (needs: pip install 'cadence[hf]')
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import cadence
from cadence.integrations.hf import CadenceTrainerCallback


class ToyTask(torch.utils.data.Dataset):
    def __init__(self, n: int = 2048, length: int = 16, vocab: int = 64) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, vocab, (n, length), generator=gen)
        self.labels = (self.ids[:, 0] < self.ids[:, -1]).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def main() -> None:
    config = BertConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=128, num_labels=2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    # layer-wise rates in one call; the Trainer takes the optimizer as given
    optimizer = torch.optim.AdamW(
        cadence.param_groups(model, lr=1e-3, weight_decay=0.01, layer_decay=0.8)
    )
    args = TrainingArguments(
        output_dir="runs/hf", max_steps=300, per_device_train_batch_size=32,
        gradient_accumulation_steps=2, max_grad_norm=0.0,  # the Regime clips and measures
        logging_steps=50, report_to=[], save_strategy="no", use_cpu=True,
    )
    callback = CadenceTrainerCallback(preset="auto", clip_norm=1.0)
    trainer = Trainer(model=model, args=args, train_dataset=ToyTask(),
                      optimizers=(optimizer, None), callbacks=[callback])
    trainer.train()
    print(f"{len(callback.regime.events)} events; dashboard: "
          f"cadence report {callback.regime.log_dir}")


if __name__ == "__main__":
    main()
