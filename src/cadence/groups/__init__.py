"""Optimizer parameter groups built from a model.

``param_groups(model, lr, ...)`` returns a list of dicts that any torch optimizer accepts
directly: no weight decay for biases and normalisation weights, layer-wise learning-rate decay
by block index or module order, and function groups (backbone/head, new/pretrained) chosen by
name patterns. ``describe_groups`` renders the result (or an optimizer's groups) as a table.
See docs/groups.md.
"""

from cadence.groups._build import OVERRIDE_KEYS, PASSTHROUGH_KEYS, param_groups
from cadence.groups._describe import describe_groups
from cadence.groups._model import BLOCK_PATTERN, HEAD_NAMES, NO_DECAY_RULES

__all__ = [
    "BLOCK_PATTERN",
    "HEAD_NAMES",
    "NO_DECAY_RULES",
    "OVERRIDE_KEYS",
    "PASSTHROUGH_KEYS",
    "describe_groups",
    "param_groups",
]
