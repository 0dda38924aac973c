"""Reading a model: its distinct parameters, what kind each one is, and how deep it sits.

Depth is what layer-wise decay scales by. It comes from block indices in parameter names
(``layers.3.``, ``h.3.``, ``blocks.3.``, ``layer3.``) when the model has any, otherwise from
the order of the modules that own parameters. Embeddings sit at depth 0, the head at the top.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
from torch import nn

#: Block index in a parameter name: a component ``layers``, ``layer``, ``blocks``, ``block``,
#: ``stages``, ``resblocks`` or ``h`` followed by an integer, with or without a dot between
#: (``encoder.layer.3.``, ``transformer.h.3.``, ``blocks.3.``, torchvision's ``layer3.``).
#: A custom pattern must have a named group ``index``.
BLOCK_PATTERN = (
    r"(?:^|\.)(?:layers|layer|blocks|block|stages|resblocks|h)\.?(?P<index>\d+)(?=\.|$)"
)

#: Module names (any component of the owning module's path) that mark the output head.
HEAD_NAMES: tuple[str, ...] = ("head", "heads", "fc", "classifier", "lm_head", "decoder")

#: Keywords accepted in ``no_decay``; any other string is a parameter-name pattern.
NO_DECAY_RULES: tuple[str, ...] = ("bias", "norm", "embedding", "1d")

_NORM_TYPES: tuple[type[nn.Module], ...] = tuple(
    t
    for t in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),  # torch >= 2.4
    )
    if t is not None
)
_NORM_CLASS_NAME = re.compile(r"Norm(\d+d)?$")  # LlamaRMSNorm, FrozenBatchNorm2d, LayerNorm2d
_EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer (by type, or a class name ending in Norm)."""
    return isinstance(module, _NORM_TYPES) or bool(_NORM_CLASS_NAME.search(type(module).__name__))


def is_bias_name(name: str) -> bool:
    """Whether ``name`` ends in a bias: ``bias``, ``in_proj_bias``, ``bias_k``."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "bias" or leaf.endswith("_bias") or leaf.startswith("bias_")


@dataclass
class ModelParam:
    """One distinct parameter tensor: its first name, every alias (tied weights) and owners."""

    name: str
    aliases: list[str]
    tensor: torch.Tensor
    owners: list[nn.Module]
    depth: int = 0
    is_head: bool = False

    @property
    def is_embedding(self) -> bool:
        return any(isinstance(m, _EMBEDDING_TYPES) for m in self.owners)

    @property
    def is_norm(self) -> bool:
        return any(is_norm(m) for m in self.owners)

    @property
    def is_bias(self) -> bool:
        return any(is_bias_name(a) for a in self.aliases)


def collect_params(model: nn.Module) -> list[ModelParam]:
    """Every distinct parameter of ``model`` (frozen ones included) in registration order.

    A tensor reachable under several names (tied embedding and head, shared modules) appears
    once, under the first name torch's ``named_parameters`` would give it, with the others kept
    as aliases so name patterns may match any of them.
    """
    found: dict[int, ModelParam] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for local, tensor in module._parameters.items():
            if tensor is None:
                continue
            full = f"{module_name}.{local}" if module_name else local
            entry = found.get(id(tensor))
            if entry is None:
                found[id(tensor)] = ModelParam(full, [full], tensor, [module])
            else:
                if full not in entry.aliases:
                    entry.aliases.append(full)
                if all(m is not module for m in entry.owners):
                    entry.owners.append(module)
    return list(found.values())


def _module_path(name: str) -> list[str]:
    return name.split(".")[:-1]


def _block_key(name: str, pattern: re.Pattern[str]) -> tuple[tuple[str, int], ...]:
    """(stack, index) for each block index in ``name``; nested stacks give several pairs."""
    return tuple(
        (re.sub(r"\d+", "*", name[: m.start("index")]), int(m.group("index")))
        for m in pattern.finditer(name)
    )


def assign_depths(
    params: list[ModelParam],
    block_pattern: re.Pattern[str],
    head_names: Collection[str],
    depth_fn: Callable[[str], int] | None = None,
) -> int:
    """Set ``depth`` and ``is_head`` on every parameter; return the largest depth.

    Automatic depths are consecutive from 0. ``depth_fn(name)`` replaces them when given.
    """
    heads = set(head_names)
    for p in params:
        p.is_head = any(part in heads for part in _module_path(p.name))
    if depth_fn is not None:
        for p in params:
            d = depth_fn(p.name)
            if isinstance(d, bool) or not isinstance(d, int) or d < 0:
                raise ValueError(
                    f"depth_fn({p.name!r}) returned {d!r}; expected a non-negative int"
                )
            p.depth = d
        return max((p.depth for p in params), default=0)

    keys = [_block_key(p.name, block_pattern) for p in params]
    if any(keys):
        _depths_from_blocks(params, keys)
    else:
        _depths_from_module_order(params)
    # Keep depths consecutive so max_depth counts only levels that exist.
    dense = {d: i for i, d in enumerate(sorted({p.depth for p in params}))}
    for p in params:
        p.depth = dense[p.depth]
    return max(dense.values(), default=0)


def _depths_from_blocks(params: list[ModelParam], keys: list[tuple[tuple[str, int], ...]]) -> None:
    """Blocks at 1..L ordered by stack (first appearance) then index; others placed around."""
    stack_rank: dict[str, int] = {}
    for key in keys:
        for stack, _ in key:
            stack_rank.setdefault(stack, len(stack_rank))
    order = sorted({tuple((stack_rank[s], i) for s, i in k) for k in keys if k})
    block_depth = {k: i + 1 for i, k in enumerate(order)}
    top = len(order) + 1
    positions = [i for i, k in enumerate(keys) if k]
    first, last = positions[0], positions[-1]
    previous = 0
    for pos, (p, key) in enumerate(zip(params, keys, strict=True)):
        if key:
            p.depth = previous = block_depth[tuple((stack_rank[s], i) for s, i in key)]
            p.is_head = False
        elif p.is_embedding:
            p.depth, p.is_head = 0, False
        elif p.is_head or pos > last:
            p.depth = top
        elif pos < first:
            p.depth = 0
        else:  # between blocks: belongs with the block before it
            p.depth = previous


def _depths_from_module_order(params: list[ModelParam]) -> None:
    """One level per module that owns parameters; a norm shares the level of the layer before."""
    level, seen_module = 0, None
    heads = []
    for p in params:
        owner = p.owners[0]
        if p.is_embedding:
            p.depth, p.is_head = 0, False
        elif p.is_head:
            heads.append(p)
        else:
            if owner is not seen_module and not (is_norm(owner) and level > 0):
                level += 1
            seen_module, p.depth = owner, level
    for p in heads:
        p.depth = level + 1
