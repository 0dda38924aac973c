"""cadence.integrations."""
