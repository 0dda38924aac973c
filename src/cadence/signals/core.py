"""Core signals every Regime measures: loss trend, global gradient norm, non-finite flag.

The Regime computes the loss and the global gradient norm once per real update (the norm
is shared with gradient clipping) and hands them over in the ``MeasureContext``; these
signals turn them into named values. ``update`` runs only on healthy steps, so a skipped
NaN step never reaches the EMAs.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

from cadence.protocol import SIGNALS, MeasureContext, Signal
from cadence.stats import Ema


def per_tensor_norms(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each gradient's L2 norm in float32, as one vector on the first gradient's device
    (one fused ``_foreach_norm`` per device, no host sync). The global norm is the norm of
    this vector; a non-finite entry makes it non-finite, so it also detects NaN/inf."""
    if not grads:
        raise ValueError("per_tensor_norms needs at least one gradient")
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for g in grads:
        by_device.setdefault(g.device, []).append(g)
    if len(by_device) == 1:
        return torch.stack(torch._foreach_norm(list(grads), 2, dtype=torch.float32))
    first = grads[0].device
    return torch.cat([torch.stack(torch._foreach_norm(gs, 2, dtype=torch.float32)).to(first)
                      for gs in by_device.values()])


def global_grad_norm(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all ``grads`` together, as a 0-dim float32 tensor (no host sync)."""
    return torch.linalg.vector_norm(per_tensor_norms(grads))


def _dtensor_type() -> type | None:
    """``DTensor`` if its module is loaded (no DTensor exists otherwise), else ``None``:
    importing it costs seconds, which a run without sharding should not pay."""
    return getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)


def is_sharded(tensors: Sequence[torch.Tensor]) -> bool:
    """True when any tensor is a ``DTensor`` (FSDP2's ``fully_shard``, tensor parallel)."""
    dtensor = _dtensor_type()
    return dtensor is not None and any(isinstance(t, dtensor) for t in tensors)


def local_shards(grads: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[bool]]:
    """Each gradient's values on this rank, and whether this rank counts them in a sum over
    ranks, so that summing the counted squares over all ranks gives each value once.

    A ``DTensor``'s local shard is counted when this rank is the first of the mesh dimensions
    the tensor is replicated over (always, for a plain ``Shard``, as FSDP makes them); a
    plain tensor is taken as replicated on every rank and counted on rank 0 only. A
    ``Partial`` gradient (unreduced) is refused: its local values do not add up in squares.
    """
    dtensor = _dtensor_type()
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    local: list[torch.Tensor] = []
    counted: list[bool] = []
    for t in grads:
        if dtensor is None or not isinstance(t, dtensor):
            local.append(t)
            counted.append(rank == 0)
            continue
        g: Any = t  # a DTensor
        if any(p.is_partial() for p in g.placements):
            raise ValueError(
                f"a gradient is a DTensor with placements {g.placements}: a Partial gradient "
                "is not reduced yet, so its norm cannot be taken from the shards; reduce it "
                "(redistribute to Shard or Replicate) before regime.step(loss)"
            )
        coord = g.device_mesh.get_coordinate()  # None: this rank is not in the mesh
        counted.append(coord is not None and all(
            c == 0 for c, p in zip(coord, g.placements, strict=True) if p.is_replicate()))
        local.append(g.to_local())
    return local, counted


def counted_sq_norm(local: Sequence[torch.Tensor], counted: Sequence[bool]) -> torch.Tensor:
    """Sum of squares of the ``counted`` tensors as a 0-dim float64 tensor (no host sync);
    its ``all_reduce(SUM)`` over ranks is the squared norm of the full gradient."""
    mine = [t for t, c in zip(local, counted, strict=True) if c]
    if not mine:
        return torch.zeros((), dtype=torch.float64, device=local[0].device)
    return per_tensor_norms(mine).double().square().sum()


class LossSignal(Signal):
    """Loss and its short/long bias-corrected EMAs, plus the EMA-difference slope.

    On a linear trend an EMA with decay β lags by β/(1−β) steps, so
    ``(ema_short − ema_long) / (lag_long − lag_short)`` estimates the loss change per step
    without bias (negative while the loss falls).

    Keys: ``loss``, ``loss_ema_short``, ``loss_ema_long``, ``loss_slope``.
    """

    name = "loss"

    def __init__(self, beta_short: float = 0.9, beta_long: float = 0.99) -> None:
        if not beta_short < beta_long:
            raise ValueError(
                f"beta_short must be < beta_long, got beta_short={beta_short}, "
                f"beta_long={beta_long}"
            )
        self.short = Ema(beta_short)
        self.long = Ema(beta_long)

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        return {"loss": ctx.loss}

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        x = reduced["loss"]
        s, l = self.short.update(x), self.long.update(x)
        lag = lambda b: b / (1.0 - b)  # noqa: E731
        slope = (s - l) / (lag(self.long.beta) - lag(self.short.beta))
        return {"loss": x, "loss_ema_short": s, "loss_ema_long": l, "loss_slope": slope}

    def state_dict(self) -> dict[str, Any]:
        return {"short": [self.short.raw, self.short.count],
                "long": [self.long.raw, self.long.count]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.short.raw, self.short.count = float(state["short"][0]), int(state["short"][1])
        self.long.raw, self.long.count = float(state["long"][0]), int(state["long"][1])


class GradNormSignal(Signal):
    """The global gradient L2 norm (before clipping), computed once by the Regime.

    Keys: ``grad_norm``.
    """

    name = "grad_norm"

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        return {"grad_norm": ctx.grad_norm}

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        return {"grad_norm": reduced["grad_norm"]}


class NonFiniteSignal(Signal):
    """1.0 when the loss or the gradient norm is NaN/inf on this rank, else 0.0.

    Reduced across ranks by the mean, so any value > 0 means "some rank saw a non-finite
    value" and every rank skips together. Key: ``nonfinite``.
    """

    name = "nonfinite"

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        bad = not (math.isfinite(ctx.loss) and math.isfinite(ctx.grad_norm))
        return {"nonfinite": 1.0 if bad else 0.0}

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        return {"nonfinite": reduced.get("nonfinite", 0.0)}


SIGNALS.register("loss")(LossSignal)
SIGNALS.register("grad_norm")(GradNormSignal)
SIGNALS.register("nonfinite")(NonFiniteSignal)

#: The signals every Regime runs, in order.
CORE_SIGNALS = ("loss", "grad_norm", "nonfinite")

__all__ = [
    "CORE_SIGNALS",
    "GradNormSignal",
    "LossSignal",
    "NonFiniteSignal",
    "counted_sq_norm",
    "global_grad_norm",
    "is_sharded",
    "local_shards",
    "per_tensor_norms",
]
