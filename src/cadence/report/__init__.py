"""cadence.report."""
