"""cadence.bench.methods."""
