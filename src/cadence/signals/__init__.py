"""cadence.signals."""
