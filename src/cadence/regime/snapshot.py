"""Last-known-good snapshot of parameters and optimizer state, for rollback.

The Regime sees only the optimizer, so a snapshot holds the tensors of the optimizer's
parameters and of its per-parameter state (Adam's moments, SGD's momentum buffers, step
counters). Buffers are allocated once and refreshed with ``torch._foreach_copy_``, so taking
a snapshot every K steps costs one copy and no allocation. ``save`` writes the snapshot to
disk (atomically) for inspection or a manual restart.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch


class Snapshot:
    """In-memory copy of an optimizer's parameters and state, taken and restored in place."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params: list[torch.Tensor] = [p for g in optimizer.param_groups for p in g["params"]]
        self._param_bufs: list[torch.Tensor] | None = None
        self._state: dict[int, dict[str, Any]] = {}
        self.step: int | None = None
        self.path: str | None = None

    @property
    def valid(self) -> bool:
        return self.step is not None

    @torch.no_grad()
    def take(self, step: int) -> None:
        """Copy the current parameters and optimizer state into the snapshot buffers."""
        if self._param_bufs is None:
            self._param_bufs = [p.detach().clone() for p in self.params]
        else:
            torch._foreach_copy_(self._param_bufs, [p.detach() for p in self.params])
        state: dict[int, dict[str, Any]] = {}
        for i, p in enumerate(self.params):
            live = self.optimizer.state.get(p)
            if not live:
                continue
            old = self._state.get(i, {})
            entry: dict[str, Any] = {}
            for key, val in live.items():
                prev = old.get(key)
                if isinstance(val, torch.Tensor):
                    if (
                        isinstance(prev, torch.Tensor)
                        and prev.shape == val.shape
                        and prev.dtype == val.dtype
                        and prev.device == val.device
                    ):
                        prev.copy_(val)
                        entry[key] = prev
                    else:
                        entry[key] = val.detach().clone()
                else:
                    entry[key] = copy.deepcopy(val)
            state[i] = entry
        self._state = state
        self.step = step

    @torch.no_grad()
    def restore(self) -> None:
        """Write the snapshot back into the live parameters and optimizer state."""
        if self._param_bufs is None or self.step is None:
            raise RuntimeError("no snapshot has been taken yet; nothing to restore")
        torch._foreach_copy_([p.detach() for p in self.params], self._param_bufs)
        for i, p in enumerate(self.params):
            saved = self._state.get(i)
            if saved is None:
                self.optimizer.state.pop(p, None)
                continue
            live = self.optimizer.state[p]
            for key in [k for k in live if k not in saved]:
                del live[key]
            for key, val in saved.items():
                cur = live.get(key)
                if isinstance(val, torch.Tensor):
                    if isinstance(cur, torch.Tensor) and cur.shape == val.shape:
                        cur.copy_(val)
                    else:
                        live[key] = val.clone()
                else:
                    live[key] = copy.deepcopy(val)

    def save(self, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> None:
        """Write the snapshot to ``path`` (``torch.save``, via a temporary file + rename).

        The file holds ``{"step", "params": [tensor per optimizer param, in group order],
        "optimizer_state": {param index: {key: value}}, **extra}``.
        """
        if self._param_bufs is None or self.step is None:
            raise RuntimeError("no snapshot has been taken yet; nothing to save")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(
            {
                "step": self.step,
                "params": self._param_bufs,
                "optimizer_state": self._state,
                **(extra or {}),
            },
            tmp,
        )
        os.replace(tmp, path)
        self.path = str(path)


__all__ = ["Snapshot"]
