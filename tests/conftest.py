"""Shared test settings: deterministic, single-threaded torch so tests are fast and stable."""

import os

import torch

torch.set_num_threads(1)
os.environ.setdefault("CADENCE_NO_PROGRESS", "1")
