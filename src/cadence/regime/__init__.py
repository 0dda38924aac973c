"""cadence.regime: the Regime orchestrator, its arbiter, bounds and presets."""

from cadence.controllers.guard import GuardError
from cadence.regime.core import Regime
from cadence.regime.presets import PRESETS, Plan, register_preset

__all__ = ["PRESETS", "GuardError", "Plan", "Regime", "register_preset"]
