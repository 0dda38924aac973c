"""cadence.regime: the Regime and the parts it runs: knobs (the one writer of
param_groups), measurement, guard, arbiter and bounds, presets, the run folder,
configuration files and state."""

from cadence.regime.core import Regime
from cadence.regime.guard import Guard, GuardError
from cadence.regime.presets import PRESETS, Plan, register_preset

__all__ = ["PRESETS", "Guard", "GuardError", "Plan", "Regime", "register_preset"]
