"""Hugging Face ``Trainer``: a ``TrainerCallback`` that puts a ``cadence.Regime`` in charge.

Where it hooks into the Trainer's loop::

    forward (model output's loss kept by a forward hook) → backward   × accumulation
    [clip if max_grad_norm > 0]
    on_pre_optimizer_step   → the Regime measures, guards, adapts and writes the knobs
    optimizer.step()        → the Trainer's single update, with the Regime's values
    lr_scheduler.step()     → a no-op: the Trainer's scheduler is switched off

As with Lightning, the callback runs the Regime's two phases around the Trainer's step
(see ``cadence.integrations._trainer``); on a guard skip or rollback the gradients are
dropped so the Trainer's update changes nothing. The Trainer's scheduler object stays in place (the
Trainer calls it and logs ``learning_rate`` from it) but its ``step()`` does nothing and
``get_last_lr()`` reports the Regime's rates. Set ``max_grad_norm=0`` and use the Regime's
``clip_norm=`` instead: the Trainer clips before the Regime measures the gradient. The
loss the Regime sees is the mean of the model's returned ``loss`` over the micro-batches,
so the model must return its loss (as every ``*ForXxx`` model does when given labels).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
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
from cadence.regime.snapshot import read_state_file

try:
    from transformers import TrainerCallback
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "cadence.integrations.hf needs transformers: pip install 'cadence[hf]'"
    ) from err


#: The Regime's state inside each ``checkpoint-<step>`` folder; resuming from that folder
#: (``trainer.train(resume_from_checkpoint=True)``) restores it.
REGIME_FILE = "cadence_regime.pt"


class CadenceTrainerCallback(TrainerCallback):
    """Run ``cadence.Regime(optimizer, total_steps, preset, **regime_kwargs)`` inside a
    ``transformers.Trainer``: ``Trainer(..., callbacks=[CadenceTrainerCallback()])``.

    Args:
        preset: the Regime preset (``"auto"`` by default).
        total_steps: planned optimizer updates; ``None`` uses the Trainer's ``max_steps``.
        restore_best: at the end of training, put back the best-by-validation weights the
            Regime kept (``auto`` keeps them), as ``load_best_model_at_end`` does; picked
            by ``TrainingArguments.metric_for_best_model`` (and ``greater_is_better``) when
            it is set and ``best_metric`` is not passed.
        **regime_kwargs: passed to ``Regime``; ``log_dir`` defaults to
            ``<output_dir>/cadence``. ``accumulation_steps`` is not accepted (set
            ``gradient_accumulation_steps`` in ``TrainingArguments``).

    Checkpoints carry the Regime's state (``REGIME_FILE``); resuming from
    ``<output_dir>/checkpoint-<step>`` restores it.

    Attributes:
        regime: the ``Regime`` (created at ``on_train_begin``).
    """

    def __init__(self, preset: str = "auto", total_steps: int | None = None,
                 restore_best: bool = False, **regime_kwargs: Any) -> None:
        if "accumulation_steps" in regime_kwargs:
            raise ValueError(
                "CadenceTrainerCallback: accumulation_steps is not accepted; set "
                "TrainingArguments(gradient_accumulation_steps=...) and the callback follows it"
            )
        self.preset = preset
        self.total_steps = None if total_steps is None else check_int("total_steps", total_steps)
        self.regime_kwargs = regime_kwargs
        self.restore_best = bool(restore_best)
        self.regime: Any = None
        self._losses: list[torch.Tensor] = []
        self._hooks: list[Any] = []
        self._knob_log = KnobLog()

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       optimizer: Any = None, lr_scheduler: Any = None, **kwargs: Any) -> None:
        from cadence.regime import Regime

        if model is None or optimizer is None:
            raise RuntimeError("CadenceTrainerCallback needs the Trainer's model and optimizer")
        if getattr(args, "max_grad_norm", 0) and args.max_grad_norm > 0:
            warnings.warn(
                f"TrainingArguments.max_grad_norm={args.max_grad_norm} clips gradients before "
                "the Regime measures them; set max_grad_norm=0 and pass clip_norm= to "
                "CadenceTrainerCallback instead", stacklevel=2,
            )
        opt = unwrap_optimizer(optimizer)
        kwargs_ = dict(self.regime_kwargs)
        if "log_dir" not in kwargs_ and getattr(args, "output_dir", None):
            kwargs_["log_dir"] = str(Path(args.output_dir) / "cadence")
        total = self.total_steps or (state.max_steps if state.max_steps > 0 else None)
        if lr_scheduler is not None:  # mute it; the Regime takes its initial_lr as the base
            _silence_scheduler(lr_scheduler, opt)
        if state.global_step > 0:  # resuming: append to the run folder, state from below
            kwargs_.setdefault("resume", "append")
        if self.restore_best and "best_metric" not in kwargs_:
            chosen = best_metric_of(args)
            if chosen is not None:
                kwargs_["best_metric"] = chosen
        self.regime = Regime(opt, total_steps=total, preset=self.preset, **kwargs_)
        if state.global_step > 0:  # resuming: the Trainer restored its state before this hook
            self._resume(Path(args.output_dir) / f"checkpoint-{state.global_step}")
        self._hooks = [finish_after_each_step(self.regime),
                       model.register_forward_hook(self._keep_loss)]

    def _resume(self, checkpoint: Path) -> None:
        saved = checkpoint / REGIME_FILE
        if not saved.is_file():
            warnings.warn(
                f"resuming at step {checkpoint.name.split('-')[-1]} but {saved} does not exist: "
                "the Regime starts afresh (its schedule and controllers restart at step 0)",
                stacklevel=3,
            )
            return
        self.regime.load_state_dict(read_state_file(saved))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Store the Regime's state in the checkpoint folder the Trainer has just written."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.regime is not None and state.is_world_process_zero and folder.is_dir():
            torch.save(self.regime.state_dict(), folder / REGIME_FILE)

    def _keep_loss(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        loss = _loss_of(output)
        if loss is not None:
            self._losses.append(loss)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.regime is None:
            return
        if not self._losses:
            raise RuntimeError(
                "CadenceTrainerCallback found no loss: the model's forward must return its loss "
                "(a 'loss' entry or the first element of a tuple) when given labels"
            )
        losses, self._losses = self._losses, []
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        self.regime.decide(loss)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        """Add the knobs to the Trainer's logs: ``cadence/<knob>`` when every group holds the
        same value, else ``cadence/<knob>/<group>`` (see ``_trainer.KnobLog``)."""
        if self.regime is None or logs is None:
            return
        extra = self._knob_log(self.regime)
        logs.update(extra)
        if state.log_history:
            state.log_history[-1].update(extra)

    def on_evaluate(self, args: Any, state: Any, control: Any,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        """Hand the evaluation to the Regime: ``eval_loss`` as ``val_loss``,
        ``eval_accuracy`` (or ``eval_acc``) as ``val_acc`` and ``eval_<name>`` as
        ``val_<name>`` for the metric the best weights are picked by (every rank
        evaluates)."""
        if self.regime is not None and metrics:
            found = validation_metrics(metrics, "eval_", best_metric_names(self.regime))
            if found:
                self.regime.observe(**found)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self.regime is not None:
            if self.restore_best:
                self.regime.restore_best()
            self.regime.close()


def best_metric_of(args: Any) -> tuple[str, str] | None:
    """``TrainingArguments.metric_for_best_model`` as the Regime's ``best_metric``:
    ``"loss"`` / ``"eval_loss"`` → ``val_loss``, ``"accuracy"`` → ``val_acc``, any other
    ``"f1"`` → ``val_f1``; the mode from ``greater_is_better`` (HF's default when unset:
    maximise unless the name ends in "loss"). ``None`` when no metric is set."""
    metric = getattr(args, "metric_for_best_model", None)
    if not metric:
        return None
    metric = str(metric).removeprefix("eval_")
    name = {"loss": "val_loss", "accuracy": "val_acc", "acc": "val_acc"}.get(metric,
                                                                          f"val_{metric}")
    greater = getattr(args, "greater_is_better", None)
    if greater is None:
        greater = not metric.endswith("loss")
    return name, "max" if greater else "min"


def _loss_of(output: Any) -> torch.Tensor | None:
    if isinstance(output, Mapping) or hasattr(output, "keys"):
        loss = output.get("loss") if hasattr(output, "get") else None
    elif isinstance(output, (tuple, list)) and output:
        loss = output[0]
    else:
        loss = output
    if isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.requires_grad:
        return loss
    return None


def _silence_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> None:
    """Make the Trainer's scheduler inert: ``step()`` does nothing and ``get_last_lr()``
    reports the rates the Regime wrote. Its ``state_dict`` leaves the patched methods out
    (torch's would try to pickle them into the checkpoint) and stays loadable by a fresh
    scheduler of its class when the Trainer resumes."""
    patched = ("step", "get_last_lr", "state_dict")
    own_state_dict = type(scheduler).state_dict
    scheduler.step = lambda *a, **k: None
    scheduler.get_last_lr = lambda: [g["lr"] for g in optimizer.param_groups]
    scheduler.state_dict = lambda: {
        k: v for k, v in own_state_dict(scheduler).items() if k not in patched
    }
