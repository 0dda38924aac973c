"""PyTorch Lightning: a callback that puts a ``cadence.Regime`` in charge of the optimizer.

How it fits Lightning's loop (automatic optimization)::

    training_step → on_before_backward(loss)      # the callback keeps the loss
                  → backward
    (every accumulate_grad_batches-th batch)
    optimizer.step(closure):
        on_before_optimizer_step                  # the callback runs the Regime here:
                                                  # measure, guard, adapt, write knobs
        Lightning's gradient clipping, then the real optimizer update
    on_train_batch_end                            # knobs logged through pl_module.log

The callback runs the Regime's two phases (see ``cadence.integrations._trainer``):
``regime.decide(loss)`` before Lightning's single update, which applies the values the
Regime just wrote, and ``regime.finish()`` after it; on a guard skip or rollback the
gradients are dropped and Lightning's update is a no-op. Gradient accumulation needs
nothing special: the hook fires only on real updates, and the Regime sees the mean of
the micro-batch losses (Lightning divides each by ``accumulate_grad_batches``; the
callback undoes that for the loss signal).
Manual optimization works too: ``self.manual_backward(loss)`` and ``opt.step()`` fire the
same hooks. Do not configure an lr scheduler in ``configure_optimizers`` (the Regime owns
the learning rate; the callback refuses to start otherwise), and prefer the Regime's
``clip_norm=`` over ``Trainer(gradient_clip_val=...)`` (Lightning clips after the Regime
has measured). The Regime's state is saved in and restored from Lightning checkpoints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from cadence.checks import check_int
from cadence.integrations._trainer import (
    KnobLog,
    best_metric_names,
    finish_after_each_step,
    unwrap_optimizer,
    validation_metrics,
)

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - depends on the environment
    try:
        from pytorch_lightning.callbacks import Callback  # type: ignore[no-redef, assignment]
    except ImportError as err:
        raise ImportError(
            "cadence.integrations.lightning needs PyTorch Lightning: "
            "pip install 'cadence[lightning]'"
        ) from err


class CadenceCallback(Callback):
    """Run ``cadence.Regime(optimizer, total_steps, preset, **regime_kwargs)`` inside a
    Lightning ``Trainer``.

    Args:
        preset: the Regime preset (``"auto"`` by default).
        total_steps: planned optimizer updates; ``None`` uses
            ``trainer.estimated_stepping_batches`` (accounts for accumulation, epochs,
            ``max_steps``).
        log_knobs: log the knobs through ``pl_module.log``: ``cadence/<knob>`` while every
            group holds the same value, else ``cadence/<knob>/<group>`` (Lightning's logger
            decides how often it writes).
        restore_best: at the end of ``fit``, put back the best-by-validation weights the
            Regime kept (``auto`` keeps them; validation is read from the logged
            ``val_loss`` and ``val_acc``, and the metric named by ``best_metric=``, e.g.
            ``best_metric="val_f1"``, as ``ModelCheckpoint(monitor=...)`` names it).
        **regime_kwargs: passed to ``Regime`` (``log_dir=``, ``bounds=``, ``clip_norm=``,
            …). ``log_dir`` defaults to ``<trainer.log_dir>/cadence`` when the trainer has
            a log folder. ``accumulation_steps`` is not accepted: Lightning accumulates.

    Attributes:
        regime: the ``Regime`` (created at ``on_fit_start``).
    """

    def __init__(
        self,
        preset: str = "auto",
        total_steps: int | None = None,
        log_knobs: bool = True,
        restore_best: bool = False,
        **regime_kwargs: Any,
    ) -> None:
        if "accumulation_steps" in regime_kwargs:
            raise ValueError(
                "CadenceCallback: accumulation_steps is not accepted; set "
                "Trainer(accumulate_grad_batches=...) and the callback follows it"
            )
        self.preset = preset
        self.total_steps = None if total_steps is None else check_int("total_steps", total_steps)
        self.log_knobs = log_knobs
        self.restore_best = bool(restore_best)
        self.regime_kwargs = regime_kwargs
        self.regime: Any = None
        self._hook: Any = None
        self._losses: list[torch.Tensor] = []
        self._pending_state: dict[str, Any] | None = None
        self._knob_log = KnobLog()

    # -- set-up -------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        from cadence.regime import Regime

        if len(trainer.optimizers) != 1:
            raise ValueError(
                f"CadenceCallback drives exactly one optimizer; configure_optimizers returned "
                f"{len(trainer.optimizers)}"
            )
        if trainer.lr_scheduler_configs:
            raise ValueError(
                "CadenceCallback: configure_optimizers also returned an lr scheduler; remove it "
                "(the Regime sets the learning rate; pass schedule=... to the callback instead)"
            )
        optimizer = unwrap_optimizer(trainer.optimizers[0])
        total = self.total_steps
        if total is None:
            estimated = trainer.estimated_stepping_batches
            total = int(estimated) if math.isfinite(estimated) and estimated > 0 else None
        kwargs = dict(self.regime_kwargs)
        if "log_dir" not in kwargs and getattr(trainer, "log_dir", None):
            kwargs["log_dir"] = str(Path(trainer.log_dir) / "cadence")
        if self._pending_state is not None:  # resuming from a checkpoint: append
            kwargs.setdefault("resume", "append")
        if self.regime is None or self.regime.optimizer is not optimizer:
            self.regime = Regime(optimizer, total_steps=total, preset=self.preset, **kwargs)
        if self._hook is None:
            self._hook = finish_after_each_step(self.regime)
        if self._pending_state is not None:
            self.regime.load_state_dict(self._pending_state)
            self._pending_state = None

    # -- the step -------------------------------------------------------------------------
    def on_before_backward(self, trainer: Any, pl_module: Any, loss: torch.Tensor) -> None:
        scale = trainer.accumulate_grad_batches if pl_module.automatic_optimization else 1
        self._losses.append(loss * scale if scale != 1 else loss)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self._hook is None:
            return
        if not self._losses:
            raise RuntimeError(
                "CadenceCallback saw an optimizer step without a backward pass; in manual "
                "optimization call self.manual_backward(loss) before opt.step()"
            )
        loss = self._losses[0] if len(self._losses) == 1 else torch.stack(self._losses).mean()
        self._losses = []
        self.regime.decide(loss)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.regime is None or not self.log_knobs:
            return
        values = self._knob_log(self.regime)
        pl_module.log_dict(values, on_step=True, on_epoch=False, prog_bar=False,
                           logger=bool(trainer.loggers))

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Hand the logged ``val_loss`` / ``val_acc`` (or ``val_accuracy``) to the Regime
        (not during the sanity check, which sees untrained weights)."""
        if self.regime is None or getattr(trainer, "sanity_checking", False):
            return
        found = validation_metrics(dict(trainer.callback_metrics), "val_",
                                   best_metric_names(self.regime))
        if found:
            self.regime.observe(**found)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.regime is not None:
            if self.restore_best:
                self.regime.restore_best()
            self.regime.close()

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.regime is not None:
            return {"regime": self.regime.state_dict()}
        return {"regime": self._pending_state} if self._pending_state else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = state_dict.get("regime")
        if state is None:
            return
        if self.regime is not None:
            self.regime.load_state_dict(state)
        else:
            self._pending_state = state
