"""Run a Regime's decision inside a trainer that calls ``optimizer.step()`` itself.

Lightning and the Hugging Face ``Trainer`` own the call to ``optimizer.step()`` (and to
``zero_grad``). ``regime.step(loss)`` would step the optimizer a second time, so
integrations call it with the optimizer's ``step`` and ``zero_grad`` deferred: measure,
guard, propose, arbitrate and apply all happen, the new values are in
``optimizer.param_groups``, the gradients are left in place, and the trainer's own step
right after does the update. When the guard skips the step or rolls back, the gradients
are dropped (set to ``None``), so the trainer's step updates nothing: torch optimizers
leave a parameter without a gradient untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


@contextlib.contextmanager
def deferred_step(
    optimizer: torch.optim.Optimizer, record: list[list[dict[str, Any]]] | None = None
) -> Iterator[None]:
    """Within the block, ``optimizer.step()`` and ``optimizer.zero_grad()`` do nothing;
    each deferred ``step()`` appends the groups' hyper-parameters at that moment (the
    values the update must use) to ``record``."""
    saved = {name: optimizer.__dict__.get(name) for name in ("step", "zero_grad")}

    def step(*args: Any, **kwargs: Any) -> None:
        if record is not None:
            record.append(_hyper(optimizer))

    patched: Any = optimizer  # instance attributes shadowing the (overloaded) methods
    patched.step = step
    patched.zero_grad = _noop
    try:
        yield
    finally:
        for name, previous in saved.items():  # restore instance attributes set by others
            if previous is None:
                delattr(optimizer, name)
            else:
                setattr(optimizer, name, previous)


class DeferredRegime:
    """Calls ``regime.step(loss)`` ahead of a trainer's own ``optimizer.step()``.

    The Regime writes the values of the *next* step into ``param_groups`` once it has
    stepped; here its step is deferred, so the values it stepped with are put back for the
    trainer's update, and the next-step values are restored by a one-shot step post-hook
    right after that update (or at the next call, if the trainer skipped its step, as
    ``GradScaler`` does on overflow).
    """

    def __init__(self, regime: Any) -> None:
        self.regime = regime
        self._after: list[dict[str, Any]] | None = None
        self._handle: Any = None

    def step(self, loss: torch.Tensor) -> bool:
        """Decide and prepare the update; ``False`` when the trainer's update must change
        nothing (guard skip or rollback: the gradients are dropped)."""
        opt = self.regime.optimizer
        self._restore_after()
        used: list[list[dict[str, Any]]] = []
        with deferred_step(opt, used):
            update = bool(self.regime.step(loss))
        if not update or not used:
            opt.zero_grad(set_to_none=True)
            return False
        self._after = _hyper(opt)
        _write(opt, used[-1])
        self._handle = opt.register_step_post_hook(lambda *_: self._restore_after())
        return True

    def _restore_after(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._after is not None:
            _write(self.regime.optimizer, self._after)
            self._after = None


def regime_decide(regime: Any, loss: torch.Tensor) -> bool:
    """One-off form of :class:`DeferredRegime` (keeps no state between calls)."""
    return DeferredRegime(regime).step(loss)


def _hyper(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Every group's entries except its parameters (tensors copied)."""
    return [
        {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v)
         for k, v in g.items() if k != "params"}
        for g in optimizer.param_groups
    ]


def _write(optimizer: torch.optim.Optimizer, values: list[dict[str, Any]]) -> None:
    for group, saved in zip(optimizer.param_groups, values, strict=True):
        for k, v in saved.items():
            if isinstance(group.get(k), torch.Tensor) and isinstance(v, torch.Tensor):
                group[k].copy_(v)
            else:
                group[k] = v


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


def _noop(*args: Any, **kwargs: Any) -> None:
    return None
