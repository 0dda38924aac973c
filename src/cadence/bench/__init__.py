"""cadence.bench: measure cadence against the peers and a tuned oracle.

Layout (AlgoPerf-style separation): ``workloads/`` (data + model + loss + evaluation,
one file each), ``methods/`` (the arms as users run them), ``runner`` (workloads ×
methods × rates × seeds in worker processes), ``db`` (SQLite, one row per run),
``oracle`` (selection of the tuned AdamW + cosine reference), ``suites`` (quick /
standard / full), ``report`` (Markdown + PNG from the database alone), ``overhead``
(per-step cost of cadence's presets) and ``cli`` (``cadence bench``). See
docs/benchmarks.md.
"""
