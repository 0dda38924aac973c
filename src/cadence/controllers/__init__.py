"""cadence.controllers: decision rules that propose bounded hyper-parameter changes.

Importing this package registers the adaptive controllers below in
``cadence.protocol.CONTROLLERS``; other controllers register when their module is imported.
"""

from cadence.controllers import (
    clara,
    drift,
    hypergradient,
    layerwise,
    learned,
    lr_trials,
    momentum,
    noise,
    salera,
    scale,
    validation,
    weight_decay,
)

__all__ = [
    "clara",
    "drift",
    "hypergradient",
    "layerwise",
    "learned",
    "lr_trials",
    "momentum",
    "noise",
    "salera",
    "scale",
    "validation",
    "weight_decay",
]
from cadence.controllers import plateau  # noqa: E402, F401  (the Regime's own)
