"""cadence.controllers."""
