"""Scale-aware defaults: initial lr, weight decay and clip threshold from the model's size.

Rules (research notes B7; numbers are priors, not oracles):

* **lr, Adam family:** μP puts the Adam lr of hidden matrices ∝ 1/fan_in. Anchored at the
  GPT-3 table (d = 768 → 6e-4, i.e. ≈ 0.46/fan_in, which also holds to within ~2× up to
  d = 4096) and clipped to [1e-4, 1]: ``lr = clip(0.5 / fan_in, 1e-4, 1)``. The upper
  clip is only a safety bound (fan-in ≥ 1 keeps the rule at ≤ 0.5). An earlier cap of
  1e-2 made ``auto`` 22× to 9·10⁶× worse than the tuned oracle on logistic regression and
  the synthetic problems, whose best Adam rates (0.1 … 1) the uncapped rule approaches
  (0.09, 0.17, 0.5; docs/auto.md).
  ``fan_in`` is the parameter-weighted median fan-in of the ≥2-D tensors when the model or
  its parameters are known, else estimated as ``sqrt(num_params / 12)`` (a transformer
  block holds ≈ 12 d² weights), which errs low for deep-narrow nets (a safe direction).
* **lr, SGD family:** 0.05 with momentum (heavy-ball lr is roughly width-independent in
  standard parametrisation), 0.1 without.
* **per-group width multipliers** (μP, Adam): groups whose fan-in is ``m×`` the reference
  get ``1/m`` (``width_multipliers``).
* **weight decay:** decoupled (AdamW): ``min(0.1, 5 / (lr · total_steps))`` so the decay
  time-scale ``1/(lr·wd)`` is at least a fifth of training (Wang & Aitchison); coupled L2
  (Adam): 0; SGD: 5e-4.
* **clip threshold:** 1.0 from 1M parameters (near-universal for large models); below,
  ``None``: small models have gradient norms ≪ 1 and want the guard's adaptive clipping.

``cadence.regime.lr_range.lr_range_test`` is the optional short range test: an exponentially
increasing lr over a few dozen steps, then the model and optimizer are restored exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from cadence.checks import check_float, warn_user
from cadence.controllers._follow import fmt
from cadence.protocol import CONTROLLERS, Context, Controller, GroupView, Proposal, Signals

__all__ = [
    "ScaleDefaults", "ScaleAware", "estimate_fan_in", "reference_lr", "scale_defaults",
    "width_multipliers",
]

#: Clip of the Adam-family rule ``0.5 / fan_in``.
ADAM_LR_RANGE = (1e-4, 1.0)

_ADAM = ("adam", "adamw", "nadam", "radam", "adamax", "lamb", "lion")
_SGD = ("sgd", "sgd_momentum", "sgdm", "nesterov")


def _kind(optimizer_kind: str) -> str:
    kind = optimizer_kind.lower()
    if kind in _ADAM or kind.startswith("adam"):
        return "adam"
    if kind in _SGD or kind.startswith("sgd"):
        return "sgd"
    raise ValueError(f"optimizer_kind must name an Adam- or SGD-family optimizer, got "
                     f"{optimizer_kind!r} (known: {', '.join(_ADAM + _SGD)})")


def estimate_fan_in(params: Iterable[torch.Tensor] | None = None, num_params: int = 0) -> float:
    """Parameter-weighted median fan-in of ≥2-D tensors (``sqrt(num_params/12)`` without them)."""
    weighted: list[tuple[int, int]] = []
    for p in params or []:
        if p.dim() >= 2 and p.numel() > 0:
            weighted.append((int(p[0].numel()), int(p.numel())))
    if weighted:
        weighted.sort()
        half, acc = sum(n for _, n in weighted) / 2, 0
        for fan_in, n in weighted:
            acc += n
            if acc >= half:
                return float(fan_in)
    if num_params <= 0:
        raise ValueError(f"need parameters or num_params > 0, got num_params={num_params!r}")
    return max(math.sqrt(num_params / 12.0), 1.0)


@dataclass
class ScaleDefaults:
    """Scale-aware starting values and the reasons behind them."""

    lr: float
    weight_decay: float
    clip_norm: float | None
    fan_in: float
    reasons: list[str] = field(default_factory=list)


def scale_defaults(
    num_params: int,
    optimizer_kind: str = "adamw",
    *,
    fan_in: float | None = None,
    total_steps: int | None = None,
    momentum: float = 0.9,
) -> ScaleDefaults:
    """Initial lr, weight decay and clip threshold for a model of this size (see module doc)."""
    if isinstance(num_params, bool) or not isinstance(num_params, int) or num_params < 1:
        raise ValueError(f"num_params must be a positive int, got {num_params!r}")
    kind = _kind(optimizer_kind)
    if fan_in is None:
        fan_in = estimate_fan_in(num_params=num_params)
        source = f"estimated from {num_params:,} parameters"
    else:
        if not fan_in >= 1:
            raise ValueError(f"fan_in must be >= 1, got {fan_in!r}")
        source = "median over hidden matrices"
    reasons = []
    if kind == "adam":
        lr = min(max(0.5 / fan_in, ADAM_LR_RANGE[0]), ADAM_LR_RANGE[1])
        reasons.append(f"Adam lr 0.5/fan_in with fan_in {fan_in:.0f} ({source}) → {fmt(lr)}")
    else:
        lr = 0.05 if momentum > 0 else 0.1
        reasons.append(f"SGD lr {lr} ({'with' if momentum > 0 else 'without'} momentum)")
    if kind == "adam" and optimizer_kind.lower() == "adamw":
        horizon = total_steps or 10_000
        wd = min(0.1, 5.0 / (lr * horizon))
        reasons.append(f"decoupled weight decay {fmt(wd)}: decay time-scale 1/(lr·wd) ≥ "
                       f"{horizon}/5 steps")
    elif kind == "adam":
        wd = 0.0
        reasons.append("coupled L2 with Adam: weight decay 0")
    else:
        wd = 5e-4
        reasons.append("SGD weight decay 5e-4")
    clip = 1.0 if num_params >= 1_000_000 else None
    reasons.append("clip at 1.0 (≥1M parameters)" if clip else
                   "no fixed clip below 1M parameters (adaptive clipping instead)")
    return ScaleDefaults(lr=lr, weight_decay=wd, clip_norm=clip, fan_in=float(fan_in),
                         reasons=reasons)


def width_multipliers(optimizer: torch.optim.Optimizer, base_fan_in: float | None = None
                      ) -> dict[int, float]:
    """μP lr multiplier per param-group index for Adam: ``base_fan_in / fan_in(group)``.

    Groups without matrices get 1. ``base_fan_in`` defaults to the smallest group fan-in,
    so multipliers are ≤ 1.
    """
    fans: dict[int, float] = {}
    for i, g in enumerate(optimizer.param_groups):
        mats = [p for p in g["params"] if p.dim() >= 2 and p.numel() > 0]
        if mats:
            fans[i] = estimate_fan_in(mats)
    if not fans:
        return {i: 1.0 for i in range(len(optimizer.param_groups))}
    ref = base_fan_in if base_fan_in is not None else min(fans.values())
    return {i: (ref / fans[i] if i in fans else 1.0) for i in range(len(optimizer.param_groups))}


def reference_lr(groups: Iterable[GroupView]) -> float | None:
    """The user's lr as one number: the parameter-weighted geometric mean of the groups'
    base lrs (groups without parameters or with lr 0 left out); ``None`` if none is left."""
    pairs = [(g.num_params, g.base["lr"]) for g in groups
             if g.num_params > 0 and g.base.get("lr", 0.0) > 0]
    total = sum(n for n, _ in pairs)
    if not total:
        return None
    return math.exp(sum(n * math.log(lr) for n, lr in pairs) / total)


@CONTROLLERS.register("scale")
class ScaleAware(Controller):
    """Replace the initial lr (and weight decay) by the scale-aware defaults, once, at step 0.

    The user's lr is read as one number (:func:`reference_lr`) and every group is scaled
    by the same factor, so layer-wise and function ratios survive; a replacement warns
    once (``UserWarning``) with the old and new value. When any group is marked
    ``pretrained`` (fine-tuning), the rule may lower the lr but never raises it.

    Proposes ``lr`` ×(target / base lr) for every group and, for decoupled optimizers, the
    weight-decay value; nothing afterwards. With ``urgent=True`` (default) the arbiter
    applies it at once instead of ramping ×1.1 per step (a starting point, not an
    adaptation; the lr bounds still apply). A user lr within ``trust`` × of the target is
    kept. Give ``fan_in`` (e.g. from ``estimate_fan_in(model.parameters())``) when known.
    ``optimizer_kind="infer"`` reads the family from the groups' knobs (``beta2`` → Adam).
    """

    name = "scale"

    def __init__(
        self,
        optimizer_kind: str = "adamw",
        fan_in: float | None = None,
        trust: float = 3.0,
        set_weight_decay: bool = False,
        urgent: bool = True,
    ) -> None:
        self.optimizer_kind = optimizer_kind
        if optimizer_kind != "infer":
            _kind(optimizer_kind)
        self.fan_in = None if fan_in is None else check_float("fan_in", fan_in, 1.0)
        self.trust = check_float("trust", trust, 1.0)
        self.set_weight_decay = bool(set_weight_decay)
        self.urgent = bool(urgent)
        self.done = False
        self.defaults: ScaleDefaults | None = None

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        if self.done:
            return []
        self.done = True
        num = max(context.num_params, 1)
        kind = self.optimizer_kind
        momentum = max((g.values.get("momentum", 0.0) for g in context.groups), default=0.0)
        if kind == "infer":  # Adam-family groups carry beta2
            kind = "adam" if any("beta2" in g.values for g in context.groups) else "sgd"
        d = scale_defaults(num, kind, fan_in=self.fan_in, total_steps=context.total_steps,
                           momentum=momentum)
        self.defaults = d
        base = reference_lr(context.groups)
        if base is None or 1 / self.trust <= d.lr / base <= self.trust:
            return []
        factor = d.lr / base
        why = (f"initial lr {fmt(base)} is {max(base / d.lr, d.lr / base):.0f}× off the "
               f"scale-aware default: {d.reasons[0]}")
        if factor > 1 and any(g.pretrained for g in context.groups):
            return []  # fine-tuning: a rule never raises a pretrained model's lr
        if len([g for g in context.groups if g.num_params]) > 1:
            why += " (one factor for every group: their ratios are kept)"
        warn_user(
            f"Regime: {why}; every group's lr is multiplied by {fmt(factor)} "
            f"({fmt(base)} -> {fmt(d.lr)}). Pass Regime(..., keep_lr=True) to keep your lr "
            "(it then moves only on evidence)")
        out = [Proposal("lr", factor=factor, urgent=self.urgent, source=self.name,
                        reason=f"{why} → lr ×{fmt(factor)}")]
        if self.set_weight_decay:
            out += [Proposal("weight_decay", value=d.weight_decay, group=g.name,
                             source=self.name, reason=d.reasons[1])
                    for g in context.groups if g.base.get("weight_decay")]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.done = bool(state["done"])


