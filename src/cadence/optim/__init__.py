"""cadence.optim."""
