"""Measuring one step: the loss, the one global gradient norm, and the signals due.

The loss, the gradient norm (shared by the guard and clipping) and, with gradient
accumulation, the micro-batch norms reach the host in one transfer; the signals due at
this step then measure, and their raw values are averaged over ranks in one collective,
so every rank decides from the same numbers. Under sharding (FSDP2's ``fully_shard``:
gradients are ``DTensor`` shards) each rank takes the sum of squares of the values it
counts (``signals.core.local_shards``), one ``all_reduce(SUM)`` of those (with the
micro-batch ones) gives the full gradient's norm on every rank, and clipping scales the
local shards. ``derive`` runs the signals' ``update`` only
on steps the guard found healthy.
"""

from __future__ import annotations

import copy
import difflib
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cadence.protocol import MeasureContext, Signal
from cadence.regime import distributed
from cadence.signals.core import (
    counted_sq_norm,
    global_grad_norm,
    is_sharded,
    local_shards,
    per_tensor_norms,
)


@dataclass
class Measurement:
    """One step's measurements: host numbers for decisions, tensors for clipping."""

    step: int
    loss: float
    grad_norm: float
    grads: list[torch.Tensor]      # this rank's gradients (local shards under sharding)
    raw: dict[str, float]          # the due signals' measurements, averaged over ranks
    due: list[Signal]
    context: MeasureContext


class Measurer:
    """Owns the signals and the micro-batch bookkeeping of gradient accumulation."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, names: list[str], signals: list[Signal],
        accumulation_steps: int,
    ) -> None:
        self.optimizer = optimizer
        self.signals = signals
        self.accumulation_steps = accumulation_steps
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.sharded = is_sharded(self.params)  # decided once: no per-step cost without
        self.params_by_group = {
            n: [p for p in g["params"] if p.requires_grad]
            for n, g in zip(names, optimizer.param_groups, strict=True)
        }
        self._every = [(s, max(1, int(s.every))) for s in signals]
        self._after = {id(s) for s in signals if type(s).after_step is not Signal.after_step}
        self._fresh = [copy.deepcopy(s.state_dict()) for s in signals]  # for a restart
        self.micro = 0
        self._losses: list[torch.Tensor] = []
        self._micro_norms: list[torch.Tensor] = []
        self._prev_grads: list[torch.Tensor] | None = None
        self._prev_params: list[torch.Tensor] | None = None

    # -- micro-batches ------------------------------------------------------------------------
    def add_micro_batch(self, loss: torch.Tensor) -> bool:
        """Record one micro-batch's loss; ``True`` when a real update is due."""
        check_loss(loss)
        self._losses.append(loss.detach())
        if self.accumulation_steps > 1:
            self._track_micro_norm()
        self.micro += 1
        if self.micro < self.accumulation_steps:
            return False
        self.micro = 0
        return True

    def reset(self) -> None:
        """Forget the micro-batches of the current update (after it, or after a resume)."""
        self.micro, self._losses, self._micro_norms = 0, [], []

    def restart(self) -> None:
        """Every signal back to its state at construction (a restart: the history it
        holds belongs to weights that were abandoned)."""
        for s, fresh in zip(self.signals, self._fresh, strict=True):
            s.load_state_dict(copy.deepcopy(fresh))
        self.reset()

    def grads(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params = [p for p in self.params if p.grad is not None]
        return params, [p.grad for p in params]  # type: ignore[misc]

    def _track_micro_norm(self) -> None:
        """Norm of this micro-batch's gradient increment (for the noise signals): one
        buffer per gradient, allocated once, holds the previous accumulated gradient."""
        params, grads = self.grads()
        if not grads:
            return
        counted: list[bool] = []
        if self.sharded:
            grads, counted = local_shards(grads)
        prev = self._prev_params
        same = (
            prev is not None
            and len(params) == len(prev)
            and all(a is b for a, b in zip(params, prev, strict=True))
        )
        inc: list[torch.Tensor] | tuple[torch.Tensor, ...] = grads
        if self.micro > 0 and same and self._prev_grads is not None:
            inc = torch._foreach_sub(grads, self._prev_grads)
        # sharded: this rank's counted sum of squares, summed over ranks in measure()
        self._micro_norms.append(counted_sq_norm(inc, counted) if self.sharded
                                 else global_grad_norm(inc))
        if self.micro == self.accumulation_steps - 1:
            return  # the real step follows; no increment to take after it
        if same and self._prev_grads is not None:
            torch._foreach_copy_(self._prev_grads, grads)
        else:
            self._prev_grads = [g.detach().clone() for g in grads]
            self._prev_params = params

    # -- one update ---------------------------------------------------------------------------
    def measure(self, step: int, closure: Callable[[], Any] | None) -> Measurement:
        """Loss, gradient norm and the due signals' raw values (one host transfer)."""
        _, grads = self.grads()
        if not grads:
            raise RuntimeError(
                "regime.step(loss) found no gradients: call loss.backward() before "
                "regime.step(loss), and check that the optimizer holds the model's parameters"
            )
        losses = self._losses
        loss_t = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        micro_t: torch.Tensor | None
        if self.sharded:  # one all-reduce of the squared norm and the micro-batch ones
            grads, counted = local_shards(grads)
            sq = distributed.sum_over_ranks(
                torch.stack([counted_sq_norm(grads, counted), *self._micro_norms]))
            norms, micro_t = sq[:1].sqrt(), sq[1:].sqrt()
        else:
            norms = per_tensor_norms(grads)
            micro_t = torch.stack(self._micro_norms) if self._micro_norms else None
        n = norms.numel()
        parts = [loss_t.reshape(1).to(norms), norms]
        if micro_t is not None:
            parts.append(micro_t.to(norms))
        host = torch.cat(parts).tolist()  # the one host transfer of the step
        loss, micro = host[0], host[1 + n:]
        grad_norm = math.hypot(*host[1:1 + n])
        self.reset()
        ctx = MeasureContext(
            step=step,
            loss=loss,
            params_by_group=self.params_by_group,
            optimizer=self.optimizer,
            grad_norm=grad_norm,
            micro_grad_norms=micro,
            closure=closure,
        )
        due = [s for s, every in self._every if step % every == 0]
        raw: dict[str, Any] = {}
        for s in due:
            for k, v in s.measure(ctx).items():
                if k in raw:
                    raise ValueError(f"signal {s.name!r} measures key {k!r} already measured")
                raw[k] = v
        return Measurement(step, loss, grad_norm, grads, distributed.reduce_mean(raw), due, ctx)

    @staticmethod
    def derive(m: Measurement) -> dict[str, float]:
        """The due signals' derived values (EMAs, slopes) from the reduced measurements."""
        out = dict(m.raw)
        for s in m.due:
            out.update(s.update(m.raw))
        return out

    def after_step(self, m: Measurement) -> None:
        """Let the due signals that look at the update see the parameters after it."""
        for s in m.due:
            if id(s) in self._after:
                s.after_step(m.context)


def check_loss(loss: Any) -> None:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(
            "regime.step(loss) needs the loss tensor you called backward() on, got "
            f"{type(loss).__name__}"
        )
    if loss.numel() != 1:
        raise ValueError(
            f"regime.step(loss) needs a scalar loss, got shape {tuple(loss.shape)}; reduce it "
            "(e.g. loss.mean()) before backward()"
        )
    if not loss.requires_grad:
        raise ValueError(
            "regime.step(loss) got a loss that does not require grad (detached, or computed "
            "under torch.no_grad()); pass the loss you called backward() on"
        )


def observed_values(metrics: dict[str, Any], read: set[str]) -> dict[str, float]:
    """``regime.observe(**metrics)`` checked and averaged over ranks.

    Values are finite numbers (Python, numpy or one-element tensors); a name that nobody
    ``read``s but that looks like a typo of one that is (``val_los``) is refused.
    """
    if not metrics:
        raise ValueError("observe() needs at least one metric, e.g. observe(val_loss=0.3)")
    vals: dict[str, Any] = {}
    for k, v in metrics.items():
        if k not in read:
            close = difflib.get_close_matches(k, sorted(read), n=1, cutoff=0.8)
            if close:
                raise ValueError(f"observe({k}=...): no controller reads {k!r}; did you mean "
                                 f"{close[0]!r}? (read: {', '.join(sorted(read))})")
        if isinstance(v, torch.Tensor):
            if v.numel() != 1:
                raise ValueError(f"observe({k}=...) needs a scalar, got shape {tuple(v.shape)}")
            finite = bool(torch.isfinite(v.detach()).all())
            vals[k] = v.detach()
        elif isinstance(v, numbers.Real) and not isinstance(v, bool):
            vals[k] = float(v)
            finite = math.isfinite(vals[k])
        else:
            raise TypeError(f"observe({k}=...) needs a number, got {type(v).__name__}")
        if not finite:
            raise ValueError(f"observe({k}={v!r}): the value must be finite; skip the call "
                             "when evaluation failed")
    return distributed.reduce_mean(vals)


__all__ = ["Measurement", "Measurer", "check_loss", "observed_values"]
