"""What the trainer integrations share: running a Regime around a trainer's own step.

Lightning and the Hugging Face ``Trainer`` call ``optimizer.step()`` and ``zero_grad()``
themselves, so they use the Regime's two phases: ``regime.decide(loss)`` just before the
trainer's step (measure, guard, propose, arbitrate, write the knobs; on a skip or rollback
the gradients are dropped, so the trainer's step changes nothing) and
``regime.finish()`` right after it, from a torch optimizer step post-hook. A step the
trainer skips (``GradScaler`` on overflow) fires no hook and is not counted.
"""

from __future__ import annotations

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
