"""What the trainer integrations share: running a Regime around a trainer's own step.

Lightning and the Hugging Face ``Trainer`` call ``optimizer.step()`` and ``zero_grad()``
themselves, so they use the Regime's two phases: ``regime.decide(loss)`` just before the
trainer's step (measure, guard, propose, arbitrate, write the knobs; on a skip or rollback
the gradients are dropped, so the trainer's step changes nothing) and
``regime.finish()`` right after it, from a torch optimizer step post-hook. A step the
trainer skips (``GradScaler`` on overflow) fires no hook and is not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


def finish_after_each_step(regime: Any) -> Any:
    """Call ``regime.finish()`` after every ``optimizer.step()``; returns the hook handle."""
    return regime.optimizer.register_step_post_hook(lambda *_: regime.finish())


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside a wrapper (accelerate's ``AcceleratedOptimizer``,
    Lightning's ``LightningOptimizer``); the optimizer itself when it is not wrapped."""
    for _ in range(5):
        inner = getattr(optimizer, "_optimizer", None) or getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            break
        optimizer = inner
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return optimizer


def validation_metrics(metrics: dict[str, Any], prefix: str,
                       also: Iterable[str] = ()) -> dict[str, float]:
    """A trainer's evaluation metrics as the Regime's names: ``<prefix>loss`` →
    ``val_loss``, ``<prefix>accuracy`` / ``<prefix>acc`` → ``val_acc``, and each
    ``val_<name>`` of ``also`` (the metric the best weights are picked by, e.g. ``val_f1``)
    from ``<prefix><name>`` (finite numbers only; a metric the trainer did not compute is
    left out)."""
    wanted = [("val_loss", ("loss",)), ("val_acc", ("accuracy", "acc"))]
    wanted += [(n, (n.removeprefix("val_"),)) for n in also if n not in ("val_loss", "val_acc")]
    out: dict[str, float] = {}
    for ours, theirs in wanted:
        for name in theirs:
            value = metrics.get(prefix + name)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = float(value.item())
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                out[ours] = float(value)
                break
    return out


def best_metric_names(regime: Any) -> list[str]:
    """The observed names the Regime picks its best weights by (none when it keeps none)."""
    best = getattr(regime, "best", None)
    return [name for name, _ in best.preference] if best is not None else []


class KnobLog:
    """The knobs as trainer log entries, few keys: ``cadence/<knob>`` while every group
    holds the same value and base (``clip_norm`` always, ``momentum`` and ``beta2``
    usually), ``cadence/<knob>/<group>`` once the groups differ (and from then on, so a
    curve does not change its name back and forth), plus ``cadence/events`` (the count)."""

    def __init__(self) -> None:
        self.split: set[str] = set()

    def __call__(self, regime: Any) -> dict[str, float]:
        by_knob: dict[str, dict[str, float]] = {}
        bases: dict[str, set[float]] = {}
        for group, knobs in regime.values().items():
            for knob, value in knobs.items():
                by_knob.setdefault(knob, {})[group] = float(value)
                bases.setdefault(knob, set()).add(regime.knobs.base(group, knob))
        out: dict[str, float] = {}
        for knob, per_group in by_knob.items():
            # groups whose bases differ (layer-wise rates) are apart even while a warmup
            # holds them all at 0
            if len(set(per_group.values())) > 1 or len(bases[knob]) > 1:
                self.split.add(knob)
            if knob in self.split:
                out.update({f"cadence/{knob}/{g}": v for g, v in per_group.items()})
            else:
                out[f"cadence/{knob}"] = next(iter(per_group.values()))
        out["cadence/events"] = float(len(regime.events))
        return out
