"""cadence.bench."""
