"""cadence's presets, driven through the public surface only (as DESIGN.md shows)::

    groups = cadence.param_groups(model, lr=lr, weight_decay=wd)
    optimizer = torch.optim.AdamW(groups)
    regime = cadence.Regime(optimizer, total_steps=T, preset=name)
    loss.backward(); regime.step(loss)
    regime.observe(val_loss=..., val_acc=...)   # at evaluation points

Besides the presets, ``CONTROLLER_ARMS`` measures every controller as its own arm: a base
preset plus ``controllers=[...]`` (and, for some, a static ``layer_decay`` or an SGD
optimizer), still through the same public surface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import Method, RunContext, Trainer

PRESETS = ("auto", "clara", "hypergradient", "plateau", "cosine", "learned")


class CadenceTrainer(Trainer):
    def __init__(self, model: nn.Module, lr: float, ctx: RunContext, preset: str,
                 **options: Any) -> None:
        import cadence

        groups = cadence.param_groups(
            model, lr=lr, weight_decay=ctx.weight_decay, groups=ctx.param_group_spec
        )
        self.optimizer = torch.optim.AdamW(groups)
        self.regime: Any = cadence.Regime(
            self.optimizer, total_steps=ctx.total_steps, preset=preset,
            **_best_by_primary(preset, ctx), **options
        )

    def step(self, loss: torch.Tensor) -> None:
        self.regime.step(loss)

    def observe(self, metrics: dict[str, float]) -> None:
        kwargs = {f"val_{k}": v for k, v in metrics.items() if k in ("loss", "acc")}
        if kwargs:
            self.regime.observe(**kwargs)

    def finish(self, model: nn.Module) -> bool:
        """The best-by-validation weights, as a user of ``auto`` who observes validation
        ends (``regime.restore_best()``, like HF's ``load_best_model_at_end``)."""
        best = self.regime.best_state()
        return bool(best is not None and best["step"] != self.regime.step_count
                    and self.regime.restore_best())


def _best_by_primary(preset: str, ctx: RunContext) -> dict[str, Any]:
    """``best_metric`` for a preset that keeps best-by-validation weights: the workload's
    primary metric, as a user names the metric they select on (HF's
    ``metric_for_best_model``). Without it ``auto`` picks by ``val_acc`` whenever it is
    observed: on logreg, whose metric is the loss, that restored weights 4 – 120× worse than
    the final ones on 3 of 10 seeds."""
    from cadence.regime.presets import resolve_preset

    if ctx.primary not in ("loss", "acc"):
        return {}
    keeps = resolve_preset(preset, ctx.total_steps, None).options.get("keep_best")
    return {"best_metric": (f"val_{ctx.primary}", "max" if ctx.higher_is_better else "min")
            } if keeps else {}


def _factory(preset: str, **options: Any) -> Any:
    return lambda model, lr, ctx: CadenceTrainer(model, lr, ctx, preset, **options)


def _auto_without(part: type, signals_too: bool = False) -> Any:
    """``auto``'s plan without its controllers of type ``part`` (an ablation arm), and
    without its extra signals when ``signals_too`` (the drift signal serves only them)."""
    from cadence.regime import presets

    def plan(total_steps: int | None, warmup_steps: int | None) -> Any:
        full = presets.auto(total_steps, warmup_steps)
        return full._replace(controllers=[c for c in full.controllers if not isinstance(c, part)],
                             signals=[] if signals_too else full.signals)
    return plan


def _register_ablations() -> list[str]:
    """Bench-only presets ``auto-no-<part>`` (registered when the bench loads)."""
    from cadence.controllers.drift import DriftResponse
    from cadence.controllers.lr_trials import LRTrials
    from cadence.controllers.scale import ScaleAware
    from cadence.controllers.validation import ValidationResponse
    from cadence.regime.presets import register_preset

    parts = {"prior": ScaleAware, "trials": LRTrials, "validation": ValidationResponse,
             "drift": DriftResponse}
    for name, part in parts.items():
        register_preset(f"auto-no-{name}")(_auto_without(part, part is DriftResponse))
    return list(parts)


ABLATIONS = _register_ablations()


METHODS = [
    Method(
        f"cadence-{p}", _factory(p), default_lr=1e-3,
        lr_meaning="initial learning rate", description=f"cadence.Regime(preset={p!r}) over AdamW",
    )
    for p in PRESETS
]
METHODS += [
    Method(f"cadence-auto-no-{part}", _factory(f"auto-no-{part}"), default_lr=1e-3,
           lr_meaning="initial learning rate",
           description=f"ablation: cadence's auto without its {part} part")
    for part in ABLATIONS
] + [
    Method("cadence-auto-no-guard", _factory("auto", guard=False, clip_norm=None),
           default_lr=1e-3, lr_meaning="initial learning rate",
           description="ablation: cadence's auto without the guard and the adaptive "
                       "clipping it computes (guard=False, clip_norm=None)"),
]


# -- every controller as its own arm -----------------------------------------------------------
#: SGD settings of the SGD-family arms (the sgd-cosine peer's, so the two compare)
SGD_MOMENTUM = 0.9
SGD_WEIGHT_DECAY = 1e-4
#: evaluations without improvement before a validation plateau cut (the adamw-plateau peer's)
PLATEAU_PATIENCE = 5


@dataclass(frozen=True)
class ControllerArm:
    """One cadence arm built from the public surface: ``cadence.param_groups`` (optionally
    with a static ``layer_decay``), a torch optimizer (``"adamw"`` or ``"sgd"``), and
    ``cadence.Regime(optimizer, total_steps, preset=preset, controllers=..., schedule=...)``.

    ``controllers(ctx)`` / ``schedule(ctx)`` build fresh objects per run (controllers keep
    state); names registered in ``cadence.protocol.CONTROLLERS`` may be given as strings.
    """

    name: str
    preset: str
    controllers: Callable[[RunContext], list[Any]] | None = None
    optimizer: str = "adamw"
    layer_decay: float | None = None
    schedule: Callable[[RunContext], Any] | None = None
    description: str = ""
    betas: tuple[float, float] | None = None  # AdamW's (β1, β2), when not torch's default


class ControllerTrainer(CadenceTrainer):
    """A :class:`ControllerArm` run as a user would write it (see the module docstring)."""

    def __init__(self, model: nn.Module, lr: float, ctx: RunContext, arm: ControllerArm) -> None:
        import cadence

        # the workload's function groups (fine-tuning: pretrained body, new head), if any
        spec = getattr(ctx, "param_group_spec", None)
        if arm.optimizer == "sgd":
            wd = SGD_WEIGHT_DECAY if ctx.weight_decay else 0.0
            groups = cadence.param_groups(model, lr=lr, weight_decay=wd,
                                          layer_decay=arm.layer_decay, groups=spec)
            self.optimizer = torch.optim.SGD(groups, momentum=SGD_MOMENTUM)
        else:
            groups = cadence.param_groups(model, lr=lr, weight_decay=ctx.weight_decay,
                                          layer_decay=arm.layer_decay, groups=spec)
            self.optimizer = torch.optim.AdamW(groups, betas=arm.betas or (0.9, 0.999))
        self.regime = cadence.Regime(
            self.optimizer, total_steps=ctx.total_steps, preset=arm.preset,
            controllers=None if arm.controllers is None else arm.controllers(ctx),
            schedule=None if arm.schedule is None else arm.schedule(ctx),
        )


def _plateau_on_validation(ctx: RunContext) -> list[Any]:
    from cadence.controllers.plateau import Plateau

    # torch's ReduceLROnPlateau settings of the adamw-plateau peer, on the selection loss
    return [Plateau(monitor="val_loss", mode="min", factor=0.1, patience=PLATEAU_PATIENCE)]


def _one_cycle(ctx: RunContext) -> Any:
    from cadence.schedules import OneCycle

    return OneCycle(ctx.total_steps)  # torch's OneCycleLR defaults


def _one_cycle_momentum(ctx: RunContext) -> list[Any]:
    from cadence.controllers.momentum import OneCycleMomentum

    return [OneCycleMomentum.for_schedule(_one_cycle(ctx))]


CONTROLLER_ARMS: tuple[ControllerArm, ...] = (
    ControllerArm(
        "cadence-momentum", "cosine", lambda ctx: ["momentum"],
        description="cosine preset + momentum controller (β1 from gradient alignment)"),
    ControllerArm(
        "cadence-weight-decay", "cosine", lambda ctx: ["weight_decay"],
        description="cosine preset + weight_decay controller (lr·wd coupling, train/val gap "
                    "on val_loss)"),
    ControllerArm(
        "cadence-noise-lr", "cosine", lambda ctx: ["noise_lr"],
        description="cosine preset + noise_lr controller (lr from the gradient noise scale)"),
    ControllerArm(
        "cadence-layerwise", "cosine", lambda ctx: ["layerwise"], layer_decay=1.0,
        description="cosine preset + layerwise controller over per-layer groups starting at "
                    "equal rates (layer_decay=1.0)"),
    ControllerArm(
        "cadence-layerwise-ld0.8", "cosine", lambda ctx: ["layerwise"], layer_decay=0.8,
        description="cosine preset + layerwise controller over per-layer groups with static "
                    "layer_decay=0.8"),
    ControllerArm(
        "cadence-salera", "constant", lambda ctx: ["salera"],
        description="constant lr + salera controller (ALeRA factors, Page-Hinkley halving), "
                    "over AdamW"),
    ControllerArm(
        "cadence-clara-sgd", "clara", optimizer="sgd",
        description=f"clara preset over torch.optim.SGD (momentum {SGD_MOMENTUM}, weight decay "
                    f"{SGD_WEIGHT_DECAY})"),
    ControllerArm(
        "cadence-plateau-val", "constant", _plateau_on_validation,
        description=f"constant lr + plateau controller on val_loss (factor 0.1, patience "
                    f"{PLATEAU_PATIENCE} evaluations, as the adamw-plateau peer)"),
    ControllerArm(
        "cadence-onecycle", "constant", _one_cycle_momentum, schedule=_one_cycle,
        betas=(0.95, 0.999),
        description="one-cycle lr (OneCycleLR defaults) with β1 cycled 0.95 → 0.85 → 0.95 by "
                    "the one_cycle_momentum controller, over AdamW"),
)


def _arm_factory(arm: ControllerArm) -> Any:
    return lambda model, lr, ctx: ControllerTrainer(model, lr, ctx, arm)


METHODS += [
    Method(
        arm.name, _arm_factory(arm), family=arm.optimizer if arm.optimizer == "sgd" else "adam",
        default_lr=0.1 if arm.optimizer == "sgd" else 1e-3, lr_meaning="initial learning rate",
        description=arm.description,
    )
    for arm in CONTROLLER_ARMS
]
