"""cadence.bench.workloads."""
