"""Validation response: answer overfitting seen in ``regime.observe(val_loss=...)``.

Overfitting is diagnosed, not guessed: the validation metric has not improved on its
best (by ``min_delta``, relative) for ``patience`` observations **while the training loss
kept falling** since that best, and no progress metric (``val_acc`` when observed) set a
new best meanwhile. Then the lr is cut by ``factor`` (at once: validation
evidence is rare and late) and, when the validation–training gap has also grown over
the last three observations, weight decay is raised by ``wd_factor`` (groups that decay
only, at most ``max_wd_raises`` times). Validation and training worsening together is
*not* overfitting (that is instability or a data shift: the guard's and drift
response's business), so nothing happens then; and nothing here ever raises the lr or
re-warms. Each decision is an Event naming the values it saw.

When validation made its last progress within the first ``restart_early`` of the run,
and since then it rose by ``restart_rise`` (at its worst observation, which may have begun
to settle) while the training loss fell by a factor of
``restart_drop`` (overfitting beyond doubt, not noise), the rate overfits almost at once:
a cut from there keeps weights that are already past their best (on small data, the
best-by-validation weights of a fast run are worse than a slower run's final ones). Then,
at most ``max_restarts`` times and while at most ``restart_before`` of the horizon is
spent, it asks for a restart instead: the initial weights back, the lr ×
``restart_factor``, the schedule replayed over the steps left (``Proposal.restart``);
"early" is then measured from the restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cadence.checks import check_float, check_int
from cadence.controllers._follow import fmt
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals


@CONTROLLERS.register("validation")
class ValidationResponse(Controller):
    """Cut the lr (and raise weight decay) when validation worsens while training improves.

    Args:
        metric: the observed metric (``regime.observe(<metric>=...)``).
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
        patience: observations without a new best before acting.
        min_delta: relative improvement that counts as a new best.
        factor: lr multiplier per response (< 1).
        wd_factor: weight-decay multiplier on a growing gap (>= 1; 1 turns it off).
        max_cuts, max_wd_raises: most responses of each kind in a run.
        progress_metric: a second observed metric (higher is better, e.g. an accuracy)
            whose new best counts as progress: a classifier's validation loss often rises
            from over-confidence while its accuracy still improves, and that is not the
            overfitting an lr cut should answer. ``None`` ignores it.
        restart_factor: lr multiplier of a restart (< 1).
        max_restarts: most restarts in a run (0 turns them off; the Regime then keeps no
            copy of the initial weights).
        restart_early: overfitting counts as immediate when validation's last progress
            came within this share of the steps (from the start or the last restart).
        restart_before: a restart only while at most this share of ``total_steps`` is done.
        restart_rise: relative rise of the metric over its best that a restart needs.
        restart_drop: factor by which the training loss must have fallen since then.
    """

    name = "validation"

    def __init__(
        self,
        metric: str = "val_loss",
        mode: str = "min",
        patience: int = 2,
        min_delta: float = 1e-3,
        factor: float = 0.5,
        wd_factor: float = 2.0,
        max_cuts: int = 4,
        max_wd_raises: int = 2,
        progress_metric: str | None = "val_acc",
        restart_factor: float = 0.1,
        max_restarts: int = 2,
        restart_early: float = 0.2,
        restart_before: float = 0.5,
        restart_rise: float = 0.05,
        restart_drop: float = 2.0,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.metric, self.mode = str(metric), mode
        self.patience = check_int("patience", patience)
        self.min_delta = check_float("min_delta", min_delta, 0.0)
        self.factor = check_float("factor", factor, 0.0, 1.0, low_open=True, high_open=True)
        self.wd_factor = check_float("wd_factor", wd_factor, 1.0)
        self.max_cuts = check_int("max_cuts", max_cuts, 0)
        self.max_wd_raises = check_int("max_wd_raises", max_wd_raises, 0)
        self.restart_factor = check_float("restart_factor", restart_factor, 0.0, 1.0,
                                          low_open=True, high_open=True)
        self.max_restarts = check_int("max_restarts", max_restarts, 0)
        self.restart_early = check_float("restart_early", restart_early, 0.0, 1.0)
        self.restart_before = check_float("restart_before", restart_before, 0.0, 1.0)
        self.restart_rise = check_float("restart_rise", restart_rise, 0.0)
        self.restart_drop = check_float("restart_drop", restart_drop, 1.0)
        self.may_restart = self.max_restarts > 0
        self.restarts = 0
        self.origin = 0  # the step training (re)started from
        self.progress_step: int | None = None  # the observation that last made progress
        self.seen_step: int | None = None
        self.best: float | None = None
        self.worst: float | None = None  # the worst observation since the last progress
        self.train_at_best: float | None = None
        self.waiting = 0
        self.cuts = 0
        self.wd_raises = 0
        self.gaps: list[float] = []
        self.progress_metric = progress_metric
        self.best_progress: float | None = None

    def _better(self, value: float, than: float) -> bool:
        margin = self.min_delta * abs(than)
        return value < than - margin if self.mode == "min" else value > than + margin

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        value = context.metrics.get(self.metric)
        if value is None or context.metrics_step == self.seen_step:
            return []
        self.seen_step = context.metrics_step
        train = signals.get("loss_ema_short", signals.get("loss"))
        if train is not None and self.mode == "min":  # a gap needs a loss on both sides
            self.gaps = (self.gaps + [value - train])[-3:]
        progress = (context.metrics.get(self.progress_metric)
                    if self.progress_metric is not None else None)
        improved = progress is not None and (
            self.best_progress is None
            or progress > self.best_progress + self.min_delta * abs(self.best_progress))
        if improved:
            self.best_progress = progress
        new_best = self.best is None or self._better(value, self.best)
        if new_best:
            self.best = value
        if new_best or improved:  # progress on either metric: nothing to answer
            self.train_at_best, self.waiting, self.worst = train, 0, None
            self.progress_step = context.metrics_step
            return []
        if self.worst is None or self._better(self.worst, value):
            self.worst = value
        self.waiting += 1
        assert self.best is not None  # set by the first observation
        before = self.train_at_best
        if (self.waiting < self.patience or train is None or before is None
                or train >= before * (1 - self.min_delta) or self.cuts >= self.max_cuts):
            return []  # not yet, or training did not improve either: not overfitting
        self.waiting = 0
        seen = (f"{self.metric} {fmt(value)} has not beaten its best {fmt(self.best)} for "
                f"{self.patience} observations while the training loss fell "
                f"{fmt(before)} → {fmt(train)}: overfitting")
        self.train_at_best = train  # the next response needs fresh evidence
        if self._may_restart(context, before, train):
            reason = (f"{seen} since step {self.progress_step} (at worst {fmt(self.worst)}), "
                      "early in the run: the lr overfits almost at once → restart from the "
                      "initial weights with lr "
                      f"×{fmt(self.restart_factor)}")
            self.restarts += 1
            self._forget(context.step)
            return [Proposal("lr", factor=self.restart_factor, source=self.name, urgent=True,
                             restart=True, reason=reason)]
        self.cuts += 1
        out = [Proposal("lr", factor=self.factor, source=self.name, urgent=True,
                        reason=f"{seen} → lr ×{fmt(self.factor)}")]
        growing = len(self.gaps) == 3 and self.gaps[0] < self.gaps[1] < self.gaps[2]
        if growing and self.wd_factor > 1 and self.wd_raises < self.max_wd_raises:
            self.wd_raises += 1
            out += [Proposal("weight_decay", factor=self.wd_factor, group=g.name,
                             source=self.name, urgent=True,
                             reason=f"{seen}, and the validation–training gap grew "
                                    f"{' → '.join(fmt(x) for x in self.gaps)} → weight "
                                    f"decay ×{fmt(self.wd_factor)}")
                    for g in context.groups if g.values.get("weight_decay", 0.0) > 0]
        return out

    def _may_restart(self, context: Context, train_then: float, train_now: float) -> bool:
        total = context.total_steps
        if total is None or self.progress_step is None or self.restarts >= self.max_restarts:
            return False
        assert self.best is not None and self.worst is not None
        # the rise is the worst seen since the last progress, not only the latest reading:
        # a rise that has begun to settle is no less evidence of overfitting
        worse = self.worst - self.best if self.mode == "min" else self.best - self.worst
        if worse < self.restart_rise * abs(self.best) or not (
                0 < train_now * self.restart_drop <= train_then):
            return False  # not beyond doubt: a cut is the answer
        early = self.progress_step - self.origin <= self.restart_early * (total - self.origin)
        return early and context.step <= self.restart_before * total

    def _forget(self, step: int) -> None:
        """A restart at ``step``: the next observations belong to a new run."""
        self.origin = step
        self.best = self.train_at_best = self.best_progress = self.worst = None
        self.waiting = 0
        self.progress_step = None
        self.gaps = []

    def state_dict(self) -> dict[str, Any]:
        return {"seen_step": self.seen_step, "best": self.best,
                "train_at_best": self.train_at_best, "waiting": self.waiting,
                "cuts": self.cuts, "wd_raises": self.wd_raises, "gaps": list(self.gaps),
                "best_progress": self.best_progress, "restarts": self.restarts,
                "origin": self.origin, "progress_step": self.progress_step,
                "worst": self.worst}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seen_step = state["seen_step"]
        self.best = state["best"]
        self.train_at_best = state["train_at_best"]
        self.waiting = int(state["waiting"])
        self.cuts = int(state["cuts"])
        self.wd_raises = int(state["wd_raises"])
        self.gaps = [float(g) for g in state["gaps"]]
        self.best_progress = state["best_progress"]
        self.restarts = int(state.get("restarts", 0))  # absent in states before restarts
        self.origin = int(state.get("origin", 0))
        self.progress_step = state.get("progress_step")
        self.worst = state.get("worst")


__all__ = ["ValidationResponse"]
