"""Activation saturation, opt-in: saturated tanh/sigmoid fraction and dead ReLU fraction.

Forward hooks on the model's ``nn.Tanh``/``nn.Sigmoid``/``nn.ReLU`` modules (activations
called as functions inside ``forward`` are invisible to hooks). The hooks are dormant
except for one training-mode forward pass after each ``measure``: that pass is reduced
under ``no_grad`` and reported by the next ``measure`` call.

* tanh: fraction of outputs with ``|y| > threshold`` (0.97 by default);
* sigmoid: fraction with ``|2y − 1| > threshold`` (the same saturation, rescaled);
* ReLU: fraction of units that are zero for *every* example in the batch (dead units).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cadence.checks import check_float, check_int
from cadence.protocol import SIGNALS, MeasureContext, Signal

__all__ = ["Saturation"]

_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"), (nn.ReLU, "relu"),
)


@SIGNALS.register("saturation")
class Saturation(Signal):
    """Per-module saturation statistics from forward hooks on the model.

    Keys: ``saturation/{module}`` (saturated fraction for tanh/sigmoid, dead fraction for
    ReLU), ``saturation.max`` (largest tanh/sigmoid saturation), ``saturation.dead_max``
    (largest dead-ReLU fraction). All 0 until a hooked forward pass has been seen.

    The model is not configuration: it stays out of ``get_config()``, so a Saturation
    rebuilt from its configuration (or created by name) hooks nothing until
    ``attach(model)``.

    Cost: one reduction per hooked activation on one forward pass every ``every`` (50 by
    default) steps; otherwise a flag test per hooked module per forward. Call ``close()``
    to remove the hooks.
    """

    name = "saturation"

    def __init__(
        self, model: nn.Module | None = None, every: int = 50, threshold: float = 0.97,
        name: str = "saturation",
    ) -> None:
        self._config.pop("model", None)  # a live object, not configuration
        self.name = name
        self.every = check_int("every", every)
        self.threshold = check_float("threshold", threshold, 0.0, 1.0, low_open=True,
                                     high_open=True)
        self._armed = True
        self._values: dict[str, float] = {}
        self._kinds: dict[str, str] = {}
        self._seen: set[str] = set()
        self._handles: list[Any] = []
        if model is not None:
            self.attach(model)

    def attach(self, model: nn.Module) -> Saturation:
        """Hook the model's ``nn.Tanh``/``nn.Sigmoid``/``nn.ReLU`` modules (replacing the hooks
        of a previous model); returns ``self``."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.close()
        self._kinds = {}
        self._seen = set()
        self._armed = True
        for mod_name, module in model.named_modules():
            kind = next((k for cls, k in _KINDS if isinstance(module, cls)), None)
            if kind is None:
                continue
            key = mod_name or "root"
            self._kinds[key] = kind
            self._handles.append(module.register_forward_hook(self._hook(key, kind)))
        return self

    def _hook(self, key: str, kind: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not self._armed or not module.training or not isinstance(output, torch.Tensor):
                return
            with torch.no_grad():
                y = output.detach().float()
                if y.numel() == 0:
                    value = 0.0
                elif kind == "relu":
                    units = y.reshape(y.shape[0], -1) if y.dim() > 1 else y.reshape(1, -1)
                    value = float((units <= 0).all(dim=0).float().mean())
                else:
                    y = y if kind == "tanh" else 2.0 * y - 1.0
                    value = float((y.abs() > self.threshold).float().mean())
            self._values[key] = value
            self._seen.add(key)
            if self._seen >= set(self._kinds):
                self._armed = False

        return hook

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        out = {f"{self.name}/{k}": self._values.get(k, 0.0) for k in self._kinds}
        sat = [self._values.get(k, 0.0) for k, kind in self._kinds.items() if kind != "relu"]
        dead = [self._values.get(k, 0.0) for k, kind in self._kinds.items() if kind == "relu"]
        out[f"{self.name}.max"] = max(sat, default=0.0)
        out[f"{self.name}.dead_max"] = max(dead, default=0.0)
        self._seen = set()
        self._armed = True
        return out

    def close(self) -> None:
        """Remove the forward hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def state_dict(self) -> dict[str, Any]:
        return {"values": dict(self._values)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._values = dict(state["values"])
