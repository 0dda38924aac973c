"""The Hugging Face Trainer callback: a few real Trainer steps with a tiny local model
(no download), checked against the same Trainer driven by a plain warmup/cosine LambdaLR."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="needs the [hf] extra (transformers)")
pytest.importorskip("accelerate", reason="the HF Trainer needs accelerate ([hf] extra)")

from cadence.integrations.hf import CadenceTrainerCallback  # noqa: E402

LR, STEPS, ACCUM, WARMUP = 1e-2, 6, 2, 2


class TinyClassifier(torch.nn.Module):
    """A custom module the Trainer can drive: returns {'loss', 'logits'} given labels."""

    def __init__(self, nan_at_call: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(),
                                       torch.nn.Linear(16, 3))
        self.nan_at_call, self.calls = nan_at_call, 0

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.net(x)
        out: dict[str, Any] = {"logits": logits}
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits, labels)
            if self.training and self.calls == self.nan_at_call:
                loss = loss * float("nan")
            self.calls += self.training
            out["loss"] = loss
        return out


class Points(torch.utils.data.Dataset):
    def __init__(self, n: int = 96) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=gen)
        self.y = (self.x[:, 0] > 0).long() + (self.x[:, 1] > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def train(tmp_path: Path, model: TinyClassifier, callbacks: list[Any],
          scheduler: Any = None, max_steps: int = STEPS, accum: int = ACCUM,
          save_steps: int | None = None, resume: str | None = None) -> Any:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=max_steps, per_device_train_batch_size=8,
        gradient_accumulation_steps=accum, learning_rate=LR, max_grad_norm=0.0,
        logging_steps=1, report_to=[], use_cpu=True, seed=0,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
        disable_tqdm=True, dataloader_num_workers=0,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = scheduler(opt) if scheduler else None
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Points(),
                                   optimizers=(opt, sched), callbacks=callbacks)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_callback_matches_the_trainer_with_a_plain_schedule(tmp_path: Path) -> None:
    def lam(step: int) -> float:
        if step < WARMUP:
            return step / WARMUP
        return 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (STEPS - WARMUP)))

    reference = TinyClassifier()
    train(tmp_path / "ref", reference, [],
          scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lam))

    callback = CadenceTrainerCallback(preset="cosine", warmup_steps=WARMUP)
    model = TinyClassifier()
    trainer = train(tmp_path / "cadence", model, [callback])
    assert callback.regime.total_steps == STEPS and callback.regime.step_count == STEPS
    for p_ref, p in zip(reference.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, p_ref, rtol=1e-6, atol=1e-7)
    opt = callback.regime.optimizer
    assert int(next(iter(opt.state.values()))["step"]) == STEPS  # one update per step
    logged = [h for h in trainer.state.log_history if "loss" in h and "cadence/lr" in h]
    assert len(logged) == STEPS
    # the Trainer's own learning_rate column reports the Regime's rate
    assert all(h["learning_rate"] == pytest.approx(h["cadence/lr"]) for h in logged)
    assert (tmp_path / "cadence" / "cadence" / "events.jsonl").exists()


def test_guard_skip_makes_the_trainer_update_a_no_op(tmp_path: Path) -> None:
    callback = CadenceTrainerCallback(preset="constant")
    model = TinyClassifier(nan_at_call=3)
    train(tmp_path, model, [callback], max_steps=5, accum=1)
    assert [e.kind for e in callback.regime.events].count("skip") == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    opt = callback.regime.optimizer
    assert int(next(iter(opt.state.values()))["step"]) == 4


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        CadenceTrainerCallback(accumulation_steps=2)


def test_resuming_from_a_checkpoint_restores_the_regime(tmp_path: Path) -> None:
    whole = TinyClassifier()
    train(tmp_path / "whole", whole, [CadenceTrainerCallback(preset="cosine")])

    first = CadenceTrainerCallback(preset="cosine")
    train(tmp_path / "split", TinyClassifier(), [first], save_steps=3)
    assert (tmp_path / "split" / "checkpoint-3" / "cadence_regime.pt").is_file()
    second = CadenceTrainerCallback(preset="cosine")
    resumed = TinyClassifier()
    steps_after: list[int] = []
    second.on_step_end = lambda *a, **k: steps_after.append(second.regime.step_count)
    train(tmp_path / "split", resumed, [second], resume=str(tmp_path / "split" / "checkpoint-3"))
    assert steps_after == [4, 5, 6]  # counted on from the checkpoint's 3 steps
    for p_whole, p in zip(whole.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, p_whole, rtol=1e-6, atol=1e-7)


def evaluated_run(tmp_path: Path, callback: CadenceTrainerCallback,
                  compute_metrics: Any = None, **args: Any) -> Any:
    """12 Trainer steps evaluated every 3 on a held-out set, with ``args`` added to the
    ``TrainingArguments``."""
    training_args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=8,
        learning_rate=LR, max_grad_norm=0.0, report_to=[], use_cpu=True, seed=0,
        eval_strategy="steps", eval_steps=3, save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, **args,
    )
    trainer = transformers.Trainer(model=TinyClassifier(), args=training_args,
                                   train_dataset=Points(), eval_dataset=Points(24),
                                   callbacks=[callback], compute_metrics=compute_metrics)
    trainer.train()
    return trainer


def test_evaluation_reaches_the_regime_and_the_best_weights_come_back(tmp_path: Path) -> None:
    """``on_evaluate`` hands ``eval_loss`` to the Regime as ``val_loss``; with
    ``restore_best=True`` the weights at the best evaluation are back after training."""
    callback = CadenceTrainerCallback(preset="auto", restore_best=True)
    trainer = evaluated_run(tmp_path, callback)
    regime = callback.regime
    assert "val_loss" in regime.metrics
    best = regime.best_state()
    assert best is not None and best["metric"] == "val_loss"
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert best["value"] == pytest.approx(min(evals))
    params = [p for g in regime.optimizer.param_groups for p in g["params"]]  # its order
    for p, q in zip(params, best["params"], strict=True):
        assert torch.equal(p.detach().cpu(), q)


def test_metric_for_best_model_picks_the_weights_that_come_back(tmp_path: Path) -> None:
    """With ``restore_best=True`` the callback follows ``metric_for_best_model`` (and
    ``greater_is_better``): a custom ``eval_hits`` reaches the Regime as ``val_hits`` and the
    weights at its best evaluation are the ones restored."""

    def hits(pred: Any) -> dict[str, float]:
        return {"hits": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    callback = CadenceTrainerCallback(preset="cosine", restore_best=True)
    trainer = evaluated_run(tmp_path, callback, compute_metrics=hits,
                            metric_for_best_model="hits")
    best = callback.regime.best_state()
    assert best is not None and best["metric"] == "val_hits"
    evals = [h["eval_hits"] for h in trainer.state.log_history if "eval_hits" in h]
    assert best["value"] == pytest.approx(max(evals))
    params = [p for g in callback.regime.optimizer.param_groups for p in g["params"]]
    for p, q in zip(params, best["params"], strict=True):
        assert torch.equal(p.detach().cpu(), q)


@pytest.mark.parametrize(("metric", "greater", "expected"), [
    (None, None, None), ("eval_loss", None, ("val_loss", "min")),
    ("accuracy", None, ("val_acc", "max")), ("wer", False, ("val_wer", "min")),
    ("bleu", True, ("val_bleu", "max")),
])
def test_best_metric_of_the_training_arguments(metric: str | None, greater: bool | None,
                                               expected: tuple[str, str] | None) -> None:
    from types import SimpleNamespace

    from cadence.integrations.hf import best_metric_of

    args = SimpleNamespace(metric_for_best_model=metric, greater_is_better=greater)
    assert best_metric_of(args) == expected
