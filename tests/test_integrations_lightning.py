"""The Lightning callback: a few real Trainer steps, checked against a plain torch loop."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="needs the [lightning] extra (lightning)")

from cadence.integrations.lightning import CadenceCallback  # noqa: E402

LR, BATCHES, BATCH = 1e-2, 12, 8


def data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * BATCH, 6, generator=gen)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def make_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


class Tiny(pl.LightningModule):
    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        self.net = make_net()
        self.nan_at = nan_at

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        return loss * float("nan") if batch_idx == self.nan_at else loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=0.01)


def fit(module: Tiny, callback: CadenceCallback, tmp_path: Path, **trainer_kwargs: Any) -> Any:
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[callback], **trainer_kwargs,
    )
    trainer.fit(module, loader)
    return trainer


def test_accumulation_matches_a_plain_torch_loop(tmp_path: Path) -> None:
    """preset='cosine' under Lightning with accumulate_grad_batches=2 gives the same weights
    as AdamW + a hand-written warmup/cosine LambdaLR with the same accumulation: one update
    per 2 batches, no double step, the Regime's lr used by Lightning's update."""
    accum, warmup = 2, 2
    callback = CadenceCallback(preset="cosine", warmup_steps=warmup, log_dir=tmp_path / "run")
    module = Tiny()
    trainer = fit(module, callback, tmp_path, accumulate_grad_batches=accum)
    total = BATCHES // accum
    assert callback.regime.total_steps == total  # from trainer.estimated_stepping_batches
    assert trainer.global_step == total and callback.regime.step_count == total

    def lam(step: int) -> float:
        if step < warmup:
            return step / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    net = make_net()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    x, y = data()
    for i in range(total):
        for j in range(accum):
            k = (i * accum + j) * BATCH
            loss = torch.nn.functional.cross_entropy(net(x[k:k + BATCH]), y[k:k + BATCH])
            (loss / accum).backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    for p_ref, p in zip(net.parameters(), module.net.parameters(), strict=True):
        torch.testing.assert_close(p, p_ref, rtol=1e-6, atol=1e-7)
    state = next(iter(module.optimizers().optimizer.state.values()))
    assert int(state["step"]) == total  # Lightning stepped once per update, never twice
    # knobs went through Lightning's logging; the run folder was written
    logged = trainer.callback_metrics
    assert "cadence/lr" in logged and "cadence/weight_decay" in logged
    assert (tmp_path / "run" / "metrics.jsonl").exists()


def test_guard_skip_turns_lightning_update_into_a_no_op(tmp_path: Path) -> None:
    callback = CadenceCallback(preset="constant", log_knobs=False)
    module = Tiny(nan_at=4)
    trainer = fit(module, callback, tmp_path, max_steps=6)
    kinds = [e.kind for e in callback.regime.events]
    assert kinds.count("skip") == 1
    assert trainer.global_step == 6
    for p in module.parameters():
        assert torch.isfinite(p).all()
    state = next(iter(module.optimizers().optimizer.state.values()))
    assert int(state["step"]) == 5  # the NaN batch changed nothing


def test_refuses_a_configured_scheduler_and_bad_arguments(tmp_path: Path) -> None:
    class WithScheduler(Tiny):
        def configure_optimizers(self) -> Any:
            opt = torch.optim.AdamW(self.parameters(), lr=LR)
            return {"optimizer": opt,
                    "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1)}

    with pytest.raises(ValueError, match="remove it"):
        fit(WithScheduler(), CadenceCallback(), tmp_path, max_steps=1)
    with pytest.raises(ValueError, match="accumulate_grad_batches"):
        CadenceCallback(accumulation_steps=2)
    with pytest.raises(ValueError, match="total_steps must be an int >= 1"):
        CadenceCallback(total_steps=0)


class TinyWithValidation(Tiny):
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())


def test_validation_reaches_the_regime_and_the_best_weights_come_back(tmp_path: Path) -> None:
    """The logged ``val_loss`` / ``val_acc`` reach the Regime after each validation (not
    the sanity check); ``restore_best=True`` puts the best-by-``val_acc`` weights back."""
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    module = TinyWithValidation()
    callback = CadenceCallback(preset="auto", restore_best=True)
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[callback], val_check_interval=4, num_sanity_val_steps=1,
    )
    trainer.fit(module, loader, loader)
    regime = callback.regime
    assert {"val_loss", "val_acc"} <= set(regime.metrics)
    best = regime.best_state()
    assert best is not None and best["metric"] == "val_acc" and best["step"] > 0
    for p, q in zip(module.parameters(), best["params"], strict=True):
        assert torch.equal(p.detach().cpu(), q)


class TinyWithMargin(TinyWithValidation):
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        x, y = batch
        logits = self.net(x)
        self.log("val_margin", logits.gather(1, y[:, None]).mean() - logits.mean())


def test_a_named_best_metric_is_read_from_the_logged_metrics(tmp_path: Path) -> None:
    """``best_metric="val_margin"`` (as ``ModelCheckpoint(monitor=...)`` would name it):
    the logged ``val_margin`` reaches the Regime and picks the weights restored."""
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    module = TinyWithMargin()
    callback = CadenceCallback(preset="auto", restore_best=True, best_metric="val_margin")
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[callback], val_check_interval=4, num_sanity_val_steps=0,
    )
    trainer.fit(module, loader, loader)
    best = callback.regime.best_state()
    assert best is not None and best["metric"] == "val_margin" and best["step"] > 0
    assert "val_margin" in callback.regime.metrics
    for p, q in zip(module.parameters(), best["params"], strict=True):
        assert torch.equal(p.detach().cpu(), q)
