"""cadence.signals: measurements of training that controllers decide from.

Importing this package registers every signal in ``cadence.protocol.SIGNALS``.
"""

from cadence.signals import (
    curvature,
    drift,
    grads,
    noise,
    path,
    saturation,
    trend,
    update_ratio,
)

__all__ = [
    "curvature",
    "drift",
    "grads",
    "noise",
    "path",
    "saturation",
    "trend",
    "update_ratio",
]
from cadence.signals import core  # noqa: E402, F401  (the Regime's core signals)
