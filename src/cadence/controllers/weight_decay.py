"""Weight-decay control: keep lr × wd consistent, and raise decay when overfitting grows.

1. **Coupling.** PyTorch's decoupled decay shrinks weights by ``lr·wd`` per step, so any
   controller that scales the lr also scales regularisation. This rule restores
   *independent* decay (tied to the schedule only, Loshchilov & Hutter's form): with
   ``c = lr / (base_lr · schedule)`` the product of all controller lr multipliers, the target
   is ``wd = base_wd / c`` (bounded to ``base_wd / coupling_range … base_wd · coupling_range``).
2. **Generalisation gap.** On each new validation observation, the relative gap
   ``(val − train) / |train|`` (train = ``loss_trend.mean``) is compared with the gap at the
   first observation after warmup. Wider by more than ``widen`` for ``patience``
   observations → decay ×``raise_factor`` (at most ``max_gap_mult``); back below
   ``widen / 2`` → decay relaxes one step towards the base. Between the two: hold.

Groups with base weight decay 0 (biases, norms) are never touched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cadence.checks import check_float, check_int
from cadence.controllers._follow import fmt
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals

__all__ = ["WeightDecayControl"]


@CONTROLLERS.register("weight_decay")
class WeightDecayControl(Controller):
    """Propose per-group weight-decay values from lr coupling and the train/val gap."""

    name = "weight_decay"
    requires = ("loss_trend",)

    def __init__(
        self,
        couple: bool = True,
        metric: str = "val_loss",
        widen: float = 0.1,
        patience: int = 2,
        raise_factor: float = 1.25,
        max_gap_mult: float = 4.0,
        coupling_range: float = 10.0,
        rel_tol: float = 0.02,
    ) -> None:
        self.couple = bool(couple)
        self.metric = metric
        self.widen = check_float("widen", widen, 0.0, low_open=True)
        self.patience = check_int("patience", patience)
        self.raise_factor = check_float("raise_factor", raise_factor, 1.0, low_open=True)
        self.max_gap_mult = check_float("max_gap_mult", max_gap_mult, 1.0, low_open=True)
        self.coupling_range = check_float("coupling_range", coupling_range, 1.0,
                                          low_open=True)
        self.rel_tol = check_float("rel_tol", rel_tol, 0.0)
        self.gap_mult = 1.0
        self._baseline: float | None = None
        self._wide = 0
        self._seen: int | None = None
        self._last_gap_reason = ""

    def _observe_gap(self, signals: Signals, context: Context) -> None:
        val = context.metrics.get(self.metric)
        train = signals.get("loss_trend.mean")
        step = context.metrics_step
        if val is None or train is None or step is None or step == self._seen:
            return
        self._seen = step
        if context.in_warmup or not (math.isfinite(val) and math.isfinite(train)) or train == 0:
            return
        gap = (val - train) / abs(train)
        if self._baseline is None:
            self._baseline = gap
            return
        excess = gap - self._baseline
        if excess > self.widen:
            self._wide += 1
            if self._wide >= self.patience and self.gap_mult < self.max_gap_mult:
                self.gap_mult = min(self.gap_mult * self.raise_factor, self.max_gap_mult)
                self._wide = 0
                self._last_gap_reason = (
                    f"train/val gap {gap:.1%} widened {excess:.1%} past its {self._baseline:.1%} "
                    f"baseline → decay ×{self.gap_mult:.2f} of base")
        elif excess < self.widen / 2:
            self._wide = 0
            if self.gap_mult > 1.0:
                self.gap_mult = max(self.gap_mult / self.raise_factor, 1.0)
                self._last_gap_reason = (
                    f"train/val gap {gap:.1%} back near its baseline → decay ×{self.gap_mult:.2f}"
                    " of base")

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        self._observe_gap(signals, context)
        proposals = []
        for g in context.groups:
            base_wd = g.base.get("weight_decay", 0.0)
            current = g.values.get("weight_decay")
            if not base_wd or current is None:
                continue
            coupling = 1.0
            why = []
            if self.couple:
                base_lr = g.base.get("lr", 0.0)
                sched = context.schedule_multiplier.get(g.name, 1.0)
                lr = g.values.get("lr", 0.0)
                if base_lr > 0 and sched > 0 and lr > 0:
                    c = lr / (base_lr * sched)
                    coupling = min(max(1.0 / c, 1 / self.coupling_range), self.coupling_range)
                    if abs(c - 1) > 1e-9:
                        why.append(f"controllers scale lr ×{fmt(c)} → decay ×{fmt(coupling)} "
                                   "keeps lr·wd on schedule")
            if self.gap_mult != 1.0 and self._last_gap_reason:
                why.append(self._last_gap_reason)
            target = base_wd * coupling * self.gap_mult
            if abs(target / current - 1.0) <= self.rel_tol if current > 0 else target == 0:
                continue
            reason = "; ".join(why) or "returning decay to its base value"
            reason += f" → weight_decay {fmt(current)} → {fmt(target)} for {g.name}"
            proposals.append(Proposal("weight_decay", value=target, group=g.name, reason=reason,
                                      source=self.name))
        return proposals

    def state_dict(self) -> dict[str, Any]:
        return {"gap_mult": self.gap_mult, "baseline": self._baseline, "wide": self._wide,
                "seen": self._seen, "reason": self._last_gap_reason}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.gap_mult = float(state["gap_mult"])
        self._baseline = state["baseline"]
        self._wide = int(state["wide"])
        self._seen = state["seen"]
        self._last_gap_reason = str(state["reason"])
