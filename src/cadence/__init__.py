"""cadence: adaptive training regimes for PyTorch.

Public surface (see docs/ and DESIGN.md)::

    groups = cadence.param_groups(model, lr=3e-4, weight_decay=0.1, layer_decay=0.8)
    optimizer = torch.optim.AdamW(groups)
    regime = cadence.Regime(optimizer, total_steps=10_000)
    ...
    loss.backward(); regime.step(loss)

Names are resolved lazily so ``import cadence`` stays cheap and a missing optional extra
only matters when the part that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "param_groups": "cadence.groups",
    "describe_groups": "cadence.groups",
    "Regime": "cadence.regime",
    "GuardError": "cadence.regime",
    "Event": "cadence.events",
    "Proposal": "cadence.protocol",
    "Context": "cadence.protocol",
    "Controller": "cadence.protocol",
    "Signal": "cadence.protocol",
}
_SUBMODULES = {
    "schedules", "groups", "regime", "events", "signals", "controllers", "optim",
    "report", "integrations", "bench", "protocol",
}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"cadence.{name}")
    raise AttributeError(f"module 'cadence' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
