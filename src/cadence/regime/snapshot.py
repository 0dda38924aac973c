"""Last-known-good snapshot of parameters and optimizer state, for rollback.

The Regime sees only the optimizer, so a snapshot holds the tensors of the optimizer's
parameters and of its per-parameter state (Adam's moments, SGD's momentum buffers, step
counters). Buffers are allocated once and refreshed with ``torch._foreach_copy_``, so taking
a snapshot every K steps costs one copy and no allocation. ``save`` writes the snapshot to
disk (atomically) for inspection or a manual restart. Under sharding (FSDP2's
``fully_shard``: parameters are ``DTensor`` shards) each rank keeps its own local shards.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cadence.signals.core import is_sharded


class Snapshot:
    """In-memory copy of an optimizer's parameters and state, taken and restored in place.

    ``offload=True`` keeps the parameters' copy in CPU memory (a copy that is rarely
    restored, such as the initial weights, should not cost accelerator memory)."""

    def __init__(self, optimizer: torch.optim.Optimizer, offload: bool = False) -> None:
        self.optimizer = optimizer
        self.offload = offload
        self.params: list[torch.Tensor] = [p for g in optimizer.param_groups for p in g["params"]]
        self.sharded = is_sharded(self.params)
        self._param_bufs: list[torch.Tensor] | None = None
        self._state: dict[int, dict[str, Any]] = {}
        self.step: int | None = None
        self.path: str | None = None

    @property
    def valid(self) -> bool:
        return self.step is not None

    def _values(self) -> list[torch.Tensor]:
        """The tensors that hold the parameters' values on this rank (to read and write in
        place, under ``no_grad``): the local shards of ``DTensor`` parameters."""
        if not self.sharded:
            return [p.detach() for p in self.params]
        from torch.distributed.tensor import DTensor

        return [p.to_local() if isinstance(p, DTensor) else p.detach() for p in self.params]

    def _copy(self, dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
        if self.offload:  # across devices: one copy per tensor
            for d, s in zip(dst, src, strict=True):
                d.copy_(s)
        else:
            torch._foreach_copy_(dst, src)

    @torch.no_grad()
    def take(self, step: int) -> None:
        """Copy the current parameters and optimizer state into the snapshot buffers."""
        if self._param_bufs is None:
            self._param_bufs = [v.to("cpu", copy=True) if self.offload else v.clone()
                                for v in self._values()]
        else:
            self._copy(self._param_bufs, self._values())
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
        self._copy(self._values(), self._param_bufs)
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

    def load(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Read a file written by :meth:`save` into the snapshot (``restore`` then applies
        it) and return its extra entries. The file is read with ``weights_only=True``: a
        crafted file cannot run code, it is refused."""
        data = read_state_file(path)
        params = data.get("params")
        if not isinstance(params, list) or len(params) != len(self.params) or any(
            not isinstance(b, torch.Tensor) or b.shape != p.shape
            for b, p in zip(params, self.params, strict=False)
        ):
            raise ValueError(f"{path} is not a snapshot of this optimizer's parameters")
        self._param_bufs = [b.to(p.device, p.dtype) for b, p in zip(params, self.params,
                                                                     strict=True)]
        self._state = {int(i): dict(v) for i, v in data["optimizer_state"].items()}
        self.step = int(data["step"])
        self.path = str(path)
        return {k: v for k, v in data.items() if k not in ("step", "params", "optimizer_state")}


#: The metrics :class:`BestSnapshot` picks by when none is named: the task's accuracy when
#: it is observed (a validation loss can rise from over-confidence while accuracy still
#: improves), else the validation loss.
DEFAULT_BEST = (("val_acc", "max"), ("val_loss", "min"))


def best_preference(metric: str | tuple[str, str] | None) -> tuple[tuple[str, str], ...]:
    """The ``(name, mode)`` pairs a :class:`BestSnapshot` picks by, from ``best_metric``.

    ``None``: :data:`DEFAULT_BEST`. A name: that metric alone, ``"min"`` when the name ends
    in ``"loss"`` and ``"max"`` otherwise (Hugging Face's ``greater_is_better`` rule). A
    ``(name, "min" | "max")`` pair: as given (e.g. ``("val_wer", "min")``).
    """
    if metric is None:
        return DEFAULT_BEST
    if isinstance(metric, str):
        name, mode = metric, "min" if metric.endswith("loss") else "max"
    elif (isinstance(metric, (tuple, list)) and len(metric) == 2
          and all(isinstance(m, str) for m in metric)):
        name, mode = metric
    else:
        raise TypeError(f"best_metric must be a metric name or a (name, 'min' | 'max') pair, "
                        f"got {metric!r}")
    if not name:
        raise ValueError("best_metric needs a metric name, e.g. 'val_loss'")
    if mode not in ("min", "max"):
        raise ValueError(f"best_metric's mode must be 'min' or 'max', got {mode!r}")
    return ((name, mode),)


class BestSnapshot(Snapshot):
    """The weights (and optimizer state) at the best value of an observed metric.

    :meth:`offer` takes a snapshot whenever the metric beats the best so far, so restoring
    it gives the model the validation picked. The metric is the first of ``preference``
    (``(name, "min" | "max")`` pairs, see :func:`best_preference`) present in the first
    observation that holds one of them.
    """

    def __init__(self, optimizer: torch.optim.Optimizer,
                 preference: tuple[tuple[str, str], ...] = DEFAULT_BEST) -> None:
        super().__init__(optimizer)
        self.preference = preference
        self.metric: str | None = None
        self.mode = "min"
        self.value: float | None = None
        self._params_only = False  # loaded from a checkpoint: no optimizer state to restore

    def offer(self, step: int, metrics: dict[str, float]) -> bool:
        """Snapshot now if the metric is a new best; ``True`` iff it was."""
        if self.metric is None:
            found = [(m, mode) for m, mode in self.preference if m in metrics]
            if not found:
                return False
            self.metric, self.mode = found[0]
        value = metrics.get(self.metric)
        if value is None:
            return False
        if self.value is not None and (value >= self.value if self.mode == "min"
                                       else value <= self.value):
            return False
        self.value = float(value)
        self.take(step)
        return True

    def state(self) -> dict[str, Any] | None:
        if self._param_bufs is None or self.step is None:
            return None
        return {"step": self.step, "metric": self.metric, "value": self.value,
                "params": [b.detach().cpu().clone() for b in self._param_bufs]}

    def restore(self) -> bool:  # type: ignore[override]
        """Put the best weights back (and their optimizer state, unless they came from a
        checkpoint, which keeps the weights only); ``False`` when there are none."""
        if not self.valid:
            return False
        if self._params_only:
            assert self._param_bufs is not None
            with torch.no_grad():
                self._copy(self._values(), self._param_bufs)
        else:
            super().restore()
        return True

    def take(self, step: int) -> None:
        super().take(step)
        self._params_only = False

    def state_dict(self) -> dict[str, Any] | None:
        """What a checkpoint keeps of it, so a resumed run still knows its best:
        :meth:`state` (metric, best value, step, CPU copies of the weights, not their
        optimizer state: one more copy of the parameters in the checkpoint, not three) and
        the metric's mode. ``None`` before the first observation of the metric."""
        kept = self.state()
        return None if kept is None else {**kept, "mode": self.mode}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore :meth:`state_dict` (``None``, as older checkpoints hold: nothing kept)."""
        self.metric, self.mode, self.value = None, "min", None
        self._param_bufs, self._state, self.step = None, {}, None
        if state is None or state["metric"] not in [m for m, _ in self.preference]:
            return  # nothing kept, or a best by another metric than this run picks by
        params = state["params"]
        if len(params) != len(self.params) or any(
                b.shape != v.shape for b, v in zip(params, self._values(), strict=True)):
            raise ValueError("the saved best weights do not match this optimizer's parameters")
        self.metric, self.mode = str(state["metric"]), str(state["mode"])
        self.value = float(state["value"])
        self._param_bufs = [b.to(v.device, v.dtype) for b, v in zip(params, self._values(),
                                                                    strict=True)]
        self.step = int(state["step"])
        self._params_only = True


def read_state_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``, with a clear error for a file that holds
    anything but tensors and plain data (such a file could run code when unpickled)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} holds objects other than tensors and plain data, so cadence refuses to "
            f"load it (unpickling it could run code): {err}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a cadence state (a dict); got {type(data)}")
    return data


__all__ = ["DEFAULT_BEST", "BestSnapshot", "Snapshot", "best_preference", "read_state_file"]
