"""Shared test settings: deterministic, single-threaded torch so tests are fast and stable.

Under ``CI`` Hypothesis runs derandomized (the same examples every run), so a CI result
does not depend on luck; locally it keeps exploring new examples.
"""

import os

import torch
from hypothesis import settings

torch.set_num_threads(1)
os.environ.setdefault("CADENCE_NO_PROGRESS", "1")

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
