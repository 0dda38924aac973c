"""``param_groups``: turn a model into torch optimizer param groups.

Each trainable tensor lands in exactly one group, keyed by (function group, depth when layer
decay is on, decays or not). A group's ``lr`` already includes its ``lr_scale``; the scale is
kept for reading and for tools that rebase the rate, never to be applied a second time.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from cadence.groups._model import (
    BLOCK_PATTERN,
    HEAD_NAMES,
    NO_DECAY_RULES,
    ModelParam,
    assign_depths,
    collect_params,
)

#: Keys of a function-group spec that cadence interprets.
OVERRIDE_KEYS = frozenset({"lr", "lr_scale", "weight_decay", "layer_decay"})
#: Keys copied unchanged into the group (torch optimizers' per-group hyper-parameters).
PASSTHROUGH_KEYS = frozenset(
    {
        "momentum", "dampening", "nesterov", "betas", "eps", "amsgrad", "alpha", "centered",
        "rho", "lr_decay", "initial_accumulator_value", "momentum_decay",
        "decoupled_weight_decay", "maximize", "lambd", "t0", "etas", "step_sizes",
    }
)
#: Keys of a function-group spec copied into the group as markers for cadence's parts:
#: ``pretrained=True`` says the group holds pretrained weights (fine-tuning), so a scale
#: rule never raises its lr (see ``cadence.controllers.scale``).
MARKER_KEYS = frozenset({"pretrained"})
_MAX_LISTED = 25


@dataclass
class _Spec:
    name: str
    patterns: list[str]
    overrides: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def matches(self, param: ModelParam) -> bool:
        # A pattern matches a full name or a module prefix: "head" covers "head.weight".
        return any(
            fnmatchcase(alias, pat) or fnmatchcase(alias, pat + ".*")
            for alias in param.aliases
            for pat in self.patterns
        )


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float | None = None,
    layer_decay: float | None = None,
    *,
    no_decay: Collection[str] = ("bias", "norm"),
    decay_embeddings: bool = True,
    groups: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]] | None = None,
    depth_fn: Callable[[str], int] | None = None,
    block_pattern: str | re.Pattern[str] = BLOCK_PATTERN,
    head_names: Collection[str] = HEAD_NAMES,
) -> list[dict[str, Any]]:
    """Build optimizer param groups for ``model``'s trainable parameters.

    Args:
        model: the module whose parameters to group; frozen ones (``requires_grad=False``)
            are left out, tied ones counted once.
        lr: base learning rate; a group's ``lr`` is its base (this or its function group's
            ``lr``) times its ``lr_scale``.
        weight_decay: applied to every parameter not caught by ``no_decay``; ``None``
            (default) leaves those groups without a ``weight_decay`` key, so the optimizer's
            own default applies (AdamW's 0.01, SGD's 0); ``no_decay`` groups get 0.
        layer_decay: in (0, 1]; when set, each depth gets its own groups and
            ``lr_scale = layer_decay ** (max_depth - depth)`` (1.0 gives per-layer groups
            with equal rates).
        no_decay: rules for zero weight decay: ``"bias"`` (biases), ``"norm"`` (every
            parameter of a normalisation layer), ``"embedding"`` (``nn.Embedding``),
            ``"1d"`` (every tensor with ndim <= 1, timm's rule); any other string is an
            fnmatch pattern on parameter names, matching the full name or a dotted tail
            (``"pos_embed"``, ``"LayerNorm.weight"``).
        decay_embeddings: ``False`` adds ``"embedding"`` to ``no_decay``.
        groups: function groups, ``{name: spec}`` or a list of specs with a ``name`` key.
            A spec has ``pattern`` (fnmatch, a string or a list; matches a full name or a
            module prefix) and overrides: ``lr``, ``lr_scale``, ``weight_decay``,
            ``layer_decay``, ``pretrained`` (``True`` marks pretrained weights: no scale
            rule raises their lr) and torch per-group keys (``momentum``, ``betas``, ...) copied
            as they are. The first matching spec wins; unmatched parameters form the
            default groups, listed last.
        depth_fn: ``name -> depth`` (int >= 0) replacing automatic depths.
        block_pattern: regex finding block indices in names (named group ``index``).
        head_names: module names marking the head, placed at the top depth.

    Returns:
        Groups with ``params``, ``name``, ``lr``, ``weight_decay`` (unless left to the
        optimizer), ``depth`` (``None`` when a
        group spans several depths), ``lr_scale``, ``num_params`` and any passthrough keys.
        Empty groups are not emitted.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_rate("lr", lr)
    lr = float(lr)
    if weight_decay is not None:
        _check_rate("weight_decay", weight_decay)
        weight_decay = float(weight_decay)
    _check_layer_decay("layer_decay", layer_decay)
    if isinstance(no_decay, str):
        raise TypeError(f"no_decay must be a collection of strings, not the string {no_decay!r}")
    rules = set(no_decay) | (set() if decay_embeddings else {"embedding"})
    pattern = re.compile(block_pattern) if isinstance(block_pattern, str) else block_pattern
    if "index" not in pattern.groupindex:
        raise ValueError(
            f"block_pattern={pattern.pattern!r} needs a named group 'index', e.g. (?P<index>\\d+)"
        )
    specs = _parse_specs(groups)

    params = collect_params(model)
    if not any(p.tensor.requires_grad for p in params):
        raise ValueError(f"model {type(model).__name__} has no trainable parameters")
    max_depth = assign_depths(params, pattern, head_names, depth_fn)

    everyone = [*specs, _Spec("", [])]  # unmatched parameters: the default groups, last
    owner = [next(i for i, s in enumerate(everyone) if not s.name or s.matches(p)) for p in params]
    for spec in specs:
        if not any(spec.matches(p) for p in params):
            raise ValueError(
                f"groups[{spec.name!r}] pattern {spec.patterns!r} matches no parameter; "
                + _names_hint(params, spec.patterns, pattern)
            )

    buckets: dict[tuple[int, int, bool], list[ModelParam]] = {}
    for p, fg in zip(params, owner, strict=True):
        if p.tensor.requires_grad:
            split = everyone[fg].overrides.get("layer_decay", layer_decay) is not None
            key = (fg, p.depth if split else -1, _decays(p, rules))
            buckets.setdefault(key, []).append(p)

    out = []
    for (fg, depth, decays), members in sorted(buckets.items(), key=lambda kv: _order(kv[0])):
        spec = everyone[fg]
        scale = spec.overrides.get("lr_scale", 1.0)
        label = None
        if depth >= 0:
            decay = spec.overrides.get("layer_decay", layer_decay)
            assert decay is not None  # depth >= 0 only in groups split by a layer decay
            scale *= decay ** (max_depth - depth)
            at_top = depth == max_depth and any(p.is_head for p in members)
            label = "head" if at_top else f"layer{depth}"
        depths = {p.depth for p in members}
        wd = spec.overrides.get("weight_decay", weight_decay) if decays else 0.0
        out.append(
            {
                "params": [p.tensor for p in members],
                "name": _group_name(spec.name, label, decays),
                "lr": spec.overrides.get("lr", lr) * scale,
                **({} if wd is None else {"weight_decay": wd}),
                "depth": depths.pop() if len(depths) == 1 else None,
                "lr_scale": scale,
                "num_params": sum(p.tensor.numel() for p in members),
                **spec.extra,
            }
        )
    names = [g["name"] for g in out]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"group names {clashes} occur twice; rename the function groups")
    return out


def _order(key: tuple[int, int, bool]) -> tuple[int, int, int]:
    fg, depth, decays = key
    return fg, depth, 0 if decays else 1


def _group_name(function: str, layer: str | None, decays: bool) -> str:
    parts = [s for s in (function, layer) if s]
    if len(parts) == 2 and parts[0] == parts[1]:
        parts.pop()  # "head" function group at the head depth: "head.decay", not "head.head"
    return ".".join([*parts, "decay" if decays else "no_decay"])


def _decays(p: ModelParam, rules: set[str]) -> bool:
    if "bias" in rules and p.is_bias:
        return False
    if "norm" in rules and p.is_norm:
        return False
    if "embedding" in rules and p.is_embedding:
        return False
    if "1d" in rules and p.tensor.ndim <= 1:
        return False
    patterns = rules.difference(NO_DECAY_RULES)
    return not any(
        fnmatchcase(a, pat) or fnmatchcase(a, "*." + pat) for a in p.aliases for pat in patterns
    )


def _fold_blocks(name: str, pattern: re.Pattern[str]) -> str:
    for m in reversed(list(pattern.finditer(name))):
        name = name[: m.start("index")] + "*" + name[m.end("index") :]
    return name


def _names_hint(params: list[ModelParam], patterns: list[str], block: re.Pattern[str]) -> str:
    names = [a for p in params for a in p.aliases]
    # Block indices folded to "*" keep the list short on deep models.
    folded = list(dict.fromkeys(_fold_blocks(n, block) for n in names))
    close = difflib.get_close_matches(patterns[0], names, n=3, cutoff=0.5)
    shown = ", ".join(folded[:_MAX_LISTED])
    more = f", ... ({len(folded) - _MAX_LISTED} more)" if len(folded) > _MAX_LISTED else ""
    hint = f" Closest: {close}." if close else ""
    return f"parameter names: {shown}{more}.{hint}"


def _parse_specs(groups: Any) -> list[_Spec]:
    if groups is None:
        return []
    if isinstance(groups, Mapping):
        items = [(name, spec) for name, spec in groups.items()]
    elif isinstance(groups, Sequence) and not isinstance(groups, str):
        items = []
        for i, spec in enumerate(groups):
            if not isinstance(spec, Mapping) or "name" not in spec:
                raise TypeError(f"groups[{i}] must be a mapping with a 'name' key, got {spec!r}")
            items.append((spec["name"], {k: v for k, v in spec.items() if k != "name"}))
    else:
        raise TypeError(f"groups must be a mapping or a list of mappings, got {type(groups)}")
    specs, seen = [], set()
    allowed = {"pattern"} | OVERRIDE_KEYS | PASSTHROUGH_KEYS | MARKER_KEYS
    for name, spec in items:
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"groups: name {name!r} must be a non-empty string without dots")
        if name in seen:
            raise ValueError(f"groups: name {name!r} is given twice")
        seen.add(name)
        if not isinstance(spec, Mapping):
            raise TypeError(f"groups[{name!r}] must be a mapping, got {type(spec).__name__}")
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(
                f"groups[{name!r}] has unknown key(s) {unknown}; allowed: {sorted(allowed)}"
            )
        raw = spec.get("pattern")
        patterns = [raw] if isinstance(raw, str) else list(raw or [])
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError(
                f"groups[{name!r}]['pattern'] must be a non-empty string or list, got {raw!r}"
            )
        overrides = {k: spec[k] for k in OVERRIDE_KEYS if k in spec}
        for key in ("lr", "lr_scale", "weight_decay"):
            if key in overrides:
                _check_rate(f"groups[{name!r}][{key!r}]", overrides[key])
        if "layer_decay" in overrides:
            _check_layer_decay(f"groups[{name!r}]['layer_decay']", overrides["layer_decay"])
        if "pretrained" in spec and not isinstance(spec["pretrained"], bool):
            raise TypeError(f"groups[{name!r}]['pretrained'] must be True or False, "
                            f"got {spec['pretrained']!r}")
        extra = {k: spec[k] for k in PASSTHROUGH_KEYS | MARKER_KEYS if k in spec}
        specs.append(_Spec(name, patterns, overrides, extra))
    return specs


def _check_rate(arg: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{arg} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{arg} must be finite and >= 0, got {value!r}")


def _check_layer_decay(arg: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{arg} must be a number or None, got {value!r}")
    if not 0 < float(value) <= 1:
        raise ValueError(f"{arg} must be in (0, 1], got {value!r}")
