"""Reducing a step's signals across ranks: one packed float64 tensor, one all-reduce.

Every rank packs its local signal values (sorted by name) into a single tensor; one
``all_reduce(SUM)`` followed by a division by the world size gives the mean on every rank,
so controllers decide from identical numbers. A NaN/inf on any rank propagates through the
sum, and the ``nonfinite`` flag (0/1 per rank) reduces to a fraction > 0 on every rank, so
all ranks skip together. Outside ``torch.distributed`` this is a plain conversion to floats
(still one host sync for tensor values).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist

#: ``torch.distributed`` is compiled in (fixed for the process; checked once).
_AVAILABLE = dist.is_available()


def is_distributed() -> bool:
    """True under an initialised ``torch.distributed`` process group with > 1 rank."""
    return _AVAILABLE and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside ``torch.distributed``)."""
    return dist.get_rank() if _AVAILABLE and dist.is_initialized() else 0


def world_size() -> int:
    """Number of ranks (1 outside ``torch.distributed``)."""
    return dist.get_world_size() if _AVAILABLE and dist.is_initialized() else 1


def _device() -> torch.device:
    """Device the process group's collectives run on (CUDA for NCCL, else CPU)."""
    backend = dist.get_backend()
    if backend == "nccl" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def pack(values: Mapping[str, float | torch.Tensor], device: torch.device) -> torch.Tensor:
    """Pack ``values`` (sorted by key) into one float64 tensor on ``device``."""
    parts = [
        v.detach().reshape(()).to(device, torch.float64)
        if isinstance(v, torch.Tensor)
        else torch.tensor(float(v), dtype=torch.float64, device=device)
        for _, v in sorted(values.items())
    ]
    return torch.stack(parts) if parts else torch.zeros(0, dtype=torch.float64, device=device)


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over ranks (one ``all_reduce``, on the process group's device); ``t``
    itself outside ``torch.distributed``."""
    if not is_distributed():
        return t
    buf = t.to(_device())
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf


def reduce_mean(values: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
    """Mean of each value over ranks, as Python floats, in one collective and one sync.

    Every rank must pass the same keys (signals run on the same steps on every rank).
    """
    if not is_distributed():
        if all(not isinstance(v, torch.Tensor) for v in values.values()):
            return {k: float(v) for k, v in values.items()}  # type: ignore[arg-type]
        device = next(v.device for v in values.values() if isinstance(v, torch.Tensor))
        flat = pack(values, device).tolist()
        return dict(zip(sorted(values), flat, strict=True))
    buf = pack(values, _device())
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    buf /= dist.get_world_size()
    return dict(zip(sorted(values), buf.tolist(), strict=True))


__all__ = ["is_distributed", "pack", "rank", "reduce_mean", "sum_over_ranks", "world_size"]
