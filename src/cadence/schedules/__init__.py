"""cadence.schedules."""
