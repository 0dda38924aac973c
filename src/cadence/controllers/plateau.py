"""Plateau controller: cut the learning rate when a monitored value stops improving.

The decision rule is torch's ``ReduceLROnPlateau`` (mode, patience, threshold with
``rel``/``abs`` mode, cooldown, min_lr, factor, eps): configured alike and fed the same
sequence, it makes the same cuts. On top of it:

* it is silent during warmup (no checks, so warmup losses never become "best");
* it reads either an observed metric (``regime.observe(val_loss=...)``: one check per new
  observation) or a signal such as the training-loss EMA (one check every ``check_every``
  steps);
* hysteresis: once a bad streak has started, an improvement must beat the best by
  ``threshold × hysteresis`` to reset it, so noise around the best does not keep a
  plateau alive forever (``hysteresis=1`` is torch's rule);
* optional bounded nudge *up* (``nudge_factor``) after ``nudge_patience`` checks without a
  new best, at most ``max_nudges`` times per run.

It proposes factors on ``lr``; the Regime's arbiter ramps them in and applies bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cadence.checks import check_float, check_int
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals


class Plateau(Controller):
    """Reduce-on-plateau as a Regime controller (see the module docstring).

    Args:
        monitor: an observed metric name (e.g. ``"val_loss"``) or a signal key
            (e.g. ``"loss_ema_short"``). Observed metrics take precedence.
        mode: ``"min"`` or ``"max"``.
        factor: multiplier applied on a cut, in (0, 1).
        patience: checks without improvement tolerated before a cut.
        threshold: minimal improvement that counts, relative or absolute.
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: checks to wait after a cut before counting again.
        min_lr: lower limit of the effective lr (a float, or ``{group: float}``).
        eps: cuts smaller than this (in lr units) are ignored.
        check_every: for signal monitors, steps between checks.
        hysteresis: >= 1; see the module docstring.
        nudge_factor: > 1 enables a nudge up after a long plateau; ``None`` disables.
        nudge_patience: checks without a new best before a nudge (default 3 × patience).
        max_nudges: nudges allowed per run.
    """

    name = "plateau"

    def __init__(
        self,
        monitor: str = "loss_ema_short",
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Mapping[str, float] = 0.0,
        eps: float = 1e-8,
        check_every: int = 1,
        hysteresis: float = 1.0,
        nudge_factor: float | None = None,
        nudge_patience: int | None = None,
        max_nudges: int = 2,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        check_float("factor", factor, 0.0, 1.0, low_open=True, high_open=True)
        check_float("threshold", threshold, 0.0)
        check_float("hysteresis", hysteresis, 1.0)
        if nudge_factor is not None:
            check_float("nudge_factor", nudge_factor, 1.0, low_open=True)
        self.monitor = monitor
        self.mode = mode
        self.factor = factor
        self.patience = check_int("patience", patience, 0)
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cooldown = check_int("cooldown", cooldown, 0)
        self.min_lr = dict(min_lr) if isinstance(min_lr, Mapping) else check_float(
            "min_lr", min_lr, 0.0)
        self.eps = eps
        self.check_every = check_int("check_every", check_every)
        self.hysteresis = hysteresis
        self.nudge_factor = nudge_factor
        self.nudge_patience = (3 * patience if nudge_patience is None
                               else check_int("nudge_patience", nudge_patience, 0))
        self.max_nudges = check_int("max_nudges", max_nudges, 0)
        # state
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad = 0
        self.cooldown_counter = 0
        self.since_best = 0
        self.nudges = 0
        self.checks = 0
        self.last_metrics_step: int | None = None

    # -- decision -----------------------------------------------------------------------------
    def is_better(self, a: float, best: float, threshold: float) -> bool:
        """torch's ``ReduceLROnPlateau.is_better`` with an explicit threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - threshold)
        if self.mode == "min":
            return a < best - threshold
        if self.threshold_mode == "rel":
            return a > best * (threshold + 1.0)
        return a > best + threshold

    def _read(self, signals: Signals, context: Context) -> float | None:
        """The monitored value if a check is due at this step, else None."""
        if self.monitor in context.metrics:
            if context.metrics_step == self.last_metrics_step:
                return None
            self.last_metrics_step = context.metrics_step
            return float(context.metrics[self.monitor])
        if self.monitor in signals and context.step % self.check_every == 0:
            return float(signals[self.monitor])
        return None

    def check(self, value: float) -> str | None:
        """Feed one monitored value; return ``"cut"``, ``"nudge"`` or None (torch's order)."""
        self.checks += 1
        threshold = self.threshold * (self.hysteresis if self.num_bad > 0 else 1.0)
        if self.is_better(value, self.best, threshold):
            self.best = value
            self.num_bad = 0
            self.since_best = 0
        else:
            self.num_bad += 1
            self.since_best += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            self.cooldown_counter = self.cooldown
            self.num_bad = 0
            return "cut"
        if (
            self.nudge_factor is not None
            and self.nudges < self.max_nudges
            and self.since_best >= self.nudge_patience
        ):
            self.nudges += 1
            self.since_best = 0
            return "nudge"
        return None

    def _min_lr(self, group: str) -> float:
        if isinstance(self.min_lr, Mapping):
            return float(self.min_lr.get(group, 0.0))
        return float(self.min_lr)

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        if context.in_warmup:
            if self.monitor in context.metrics:  # consume warmup observations unseen
                self.last_metrics_step = context.metrics_step
            return []
        value = self._read(signals, context)
        if value is None or not math.isfinite(value):
            return []
        best_before = self.best
        action = self.check(value)
        if action is None:
            return []
        out: list[Proposal] = []
        if action == "nudge":
            reason = (
                f"{self.monitor}={value:.4g} no new best ({self.best:.4g}) for "
                f"{self.nudge_patience} checks: nudge up x{self.nudge_factor:g} "
                f"({self.nudges}/{self.max_nudges})"
            )
            return [Proposal("lr", factor=self.nudge_factor, reason=reason, source=self.name)]
        for g in context.groups:
            lr = g.values.get("lr")
            if lr is None or lr <= 0:
                continue
            new = max(lr * self.factor, self._min_lr(g.name))
            if lr - new > self.eps:
                reason = (
                    f"{self.monitor}={value:.4g} not better than best {best_before:.4g} "
                    f"({self.threshold_mode} threshold {self.threshold:g}) for "
                    f"{self.patience + 1} checks: x{new / lr:.3g}"
                )
                out.append(
                    Proposal("lr", factor=new / lr, group=g.name, reason=reason, source=self.name)
                )
        return out

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "num_bad": self.num_bad,
            "cooldown_counter": self.cooldown_counter,
            "since_best": self.since_best,
            "nudges": self.nudges,
            "checks": self.checks,
            "last_metrics_step": self.last_metrics_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.num_bad = int(state["num_bad"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.since_best = int(state["since_best"])
        self.nudges = int(state["nudges"])
        self.checks = int(state["checks"])
        self.last_metrics_step = state["last_metrics_step"]


CONTROLLERS.register("plateau")(Plateau)

__all__ = ["Plateau"]
