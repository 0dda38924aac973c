"""``describe_groups``: a plain-text table of param groups and their values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import torch

_COLUMNS = ("name", "depth", "tensors", "params", "lr", "weight_decay", "lr_scale")


def describe_groups(
    groups_or_optimizer: torch.optim.Optimizer | Iterable[Mapping[str, Any]],
    file: TextIO | None = None,
) -> str:
    """Return a table of groups: name, depth, #tensors, #params, lr, weight_decay, lr_scale.

    Accepts the list ``cadence.param_groups`` returns or any torch optimizer (its current
    ``param_groups``, so scheduled values show as they are now). Unnamed groups are shown as
    ``group0``, ``group1``, ... (the Regime's convention). Prints to ``file`` when given.
    """
    groups: list[Mapping[str, Any]]
    if isinstance(groups_or_optimizer, torch.optim.Optimizer):
        groups = list(groups_or_optimizer.param_groups)
    elif isinstance(groups_or_optimizer, (str, bytes, Mapping)) or not isinstance(
        groups_or_optimizer, Iterable
    ):
        raise TypeError(
            "groups_or_optimizer must be a torch optimizer or a list of param-group dicts, "
            f"got {type(groups_or_optimizer).__name__}"
        )
    else:
        groups = list(groups_or_optimizer)

    rows, total_tensors, total_params = [], 0, 0
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"groups_or_optimizer[{i}] must be a dict with 'params', got {group!r}")
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        count = sum(p.numel() for p in params)
        total_tensors += len(params)
        total_params += count
        rows.append(
            (
                str(group.get("name", f"group{i}")),
                _fmt(group.get("depth")),
                str(len(params)),
                f"{count:,}",
                _fmt(group.get("lr")),
                _fmt(group.get("weight_decay")),
                _fmt(group.get("lr_scale")),
            )
        )
    rows.append(("total", "", str(total_tensors), f"{total_params:,}", "", "", ""))

    widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(_COLUMNS)]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    text = "\n".join([line(_COLUMNS), rule, *map(line, rows[:-1]), rule, line(rows[-1])])
    if file is not None:
        print(text, file=file)
    return text


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"
