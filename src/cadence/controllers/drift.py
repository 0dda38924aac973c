"""Drift response: on a confirmed distribution shift, re-warm the lr in stages.

Trigger: the guard's verdict that the data changed (signal ``shift``): either the restored
known-good weights spiked too after a rollback, or, after an upward alarm of the ``drift``
signal (training loss above its trend), the restored weights' loss rose too (the guard's
drift check, ``cadence.regime.guard``). A training-loss rise that the restored weights do
not show came from the weights or the lr: it is never answered by a re-warm. Without a
guard (no ``shift`` signal) the ``drift`` alarm alone triggers, as the only evidence there
is. A validation rise never triggers a re-warm (that is overfitting's business); an upward
Page-Hinkley alarm on the observed validation metric is only mentioned in the reason of a
re-warm the training loss triggered. Outside warmup and outside ``cooldown`` steps after
the previous episode:

1. **Re-warm in stages.** The target lr multiplier ``M = clip(rewarm_to / s, 1, max_mult)``,
   with ``s`` the current schedule multiplier, brings the lr back to a fraction
   ``rewarm_to`` of its peak (a decayed schedule has too little lr to learn the new data).
   It is reached in ``stages`` equal geometric stages of ``stage_steps`` steps, held for
   ``hold_steps``, then returned to 1 geometrically over ``decay_steps``.
2. **Rebalance regularisation.** Weight decay moves by the inverse factor, so lr × wd (the
   decay actually applied per step) stays where it was while the lr is raised.

Every proposal's reason starts with ``"drift:"`` so the Regime can log it as a ``drift``
event; it names the step the shift was confirmed at and the *current* detector readings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cadence.checks import check_float, check_int
from cadence.controllers._follow import Follower
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals
from cadence.stats import EmaMoments, PageHinkley

__all__ = ["DriftResponse"]


@CONTROLLERS.register("drift_response")
class DriftResponse(Controller):
    """Staged lr re-warm (and matching wd rebalance) after a detected shift."""

    name = "drift_response"
    requires = ("drift",)

    def __init__(
        self,
        rewarm_to: float = 0.5,
        max_mult: float = 5.0,
        stages: int = 4,
        stage_steps: int = 25,
        hold_steps: int = 100,
        decay_steps: int = 200,
        cooldown: int = 200,
        metric: str = "val_loss",
        rebalance_wd: bool = True,
    ) -> None:
        self.rewarm_to = check_float("rewarm_to", rewarm_to, 0.0, 1.0, low_open=True)
        self.max_mult = check_float("max_mult", max_mult, 1.0, low_open=True)
        self.stages = check_int("stages", stages)
        self.stage_steps = check_int("stage_steps", stage_steps)
        self.hold_steps = check_int("hold_steps", hold_steps, 0)
        self.decay_steps = check_int("decay_steps", decay_steps)
        self.cooldown = check_int("cooldown", cooldown, 0)
        self.metric = metric
        self.rebalance_wd = bool(rebalance_wd)
        self.follower = Follower((1.0, self.max_mult), max_step=1.08, deadband=0.005,
                                 reverse=1.0)
        self._start: int | None = None
        self._peak = 1.0
        self._trigger = ""
        self._last_end = -(10**9)
        self._val_ph = PageHinkley(delta=0.5, threshold=6.0, min_instances=5)
        self._val_moments = EmaMoments(0.9)
        self._seen: int | None = None
        self._val_note: tuple[int, str] | None = None  # the latest validation alarm

    def _val_alarm(self, context: Context) -> str | None:
        value = context.metrics.get(self.metric)
        step = context.metrics_step
        if value is None or step is None or step == self._seen or not math.isfinite(value):
            return None
        self._seen = step
        z = self._val_moments.zscore(value)
        self._val_moments.update(value)
        if self._val_moments.count < 3:
            return None
        if self._val_ph.update(max(-3.0, min(3.0, z))) == 1:
            return f"{self.metric} shifted up (Page-Hinkley on its z-scores, latest z {z:+.1f})"
        return None

    def _desired(self, step: int) -> tuple[float, str]:
        assert self._start is not None
        age = step - self._start
        ramp = self.stages * self.stage_steps
        if age < ramp:
            k = age // self.stage_steps + 1
            return self._peak ** (k / self.stages), f"re-warm stage {k}/{self.stages}"
        if age < ramp + self.hold_steps:
            return self._peak, "holding the re-warmed lr"
        frac = (age - ramp - self.hold_steps) / self.decay_steps
        if frac >= 1:
            return 1.0, "re-warm finished"
        return self._peak ** (1 - frac), "returning to the schedule"

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        val_reason = self._val_alarm(context)
        if val_reason:
            self._val_note = (context.step, val_reason)
        if self._start is None:
            confirmed = "shift" in signals  # the guard's test runs: only its verdict counts
            shifted = signals.get("shift" if confirmed else "drift", 0.0) > 0
            if context.in_warmup or context.step - self._last_end < self.cooldown:
                return []
            if not shifted:
                return []
            sched = [v for v in context.schedule_multiplier.values() if v > 0]
            s = min(sched) if sched else 1.0
            self._peak = min(max(self.rewarm_to / s, 1.0), self.max_mult)
            if self._peak <= 1.0 + 1e-6:
                self._peak = min(1.5, self.max_mult)  # early in the schedule: a mild boost
            self._start = context.step
            if confirmed:
                self._trigger = (f"data shift confirmed by the guard at step {context.step} "
                                 f"(restored weights' loss z={signals.get('shift.z', 0.0):+.1f})")
            else:
                self._trigger = (
                    f"training loss shifted up at step {context.step} (CUSUM "
                    f"{signals.get('drift.cusum', 0.0):.1f}σ, Page-Hinkley "
                    f"{signals.get('drift.ph', 0.0):.1f}σ; no guard to confirm it)")
            if self._val_note and context.step - self._val_note[0] <= self.cooldown:
                self._trigger += f"; {self._val_note[1]} at step {self._val_note[0]}"
        target, phase = self._desired(context.step)
        factor = self.follower.move("", target)
        if phase == "re-warm finished" and factor is None:
            self._start = None
            self._last_end = context.step
            self.follower.mult[""] = 1.0
            return []
        if factor is None:
            return []
        mult = self.follower.get("")
        now = (f"now: loss z {signals.get('drift.z', 0.0):+.1f}, CUSUM "
               f"{signals.get('drift.cusum', 0.0):.1f}σ, Page-Hinkley "
               f"{signals.get('drift.ph', 0.0):.1f}σ")
        trigger = (self._trigger if context.step == self._start
                   else f"after the shift of step {self._start}")
        reason = (f"drift: {trigger} → {phase}: lr ×{factor:.3f} (drift multiplier "
                  f"{mult:.2f}, peak ×{self._peak:.2f}; {now})")
        out = [Proposal("lr", factor=factor, reason=reason, source=self.name)]
        if self.rebalance_wd and any(g.values.get("weight_decay") for g in context.groups):
            out.append(Proposal("weight_decay", factor=1.0 / factor, source=self.name,
                                reason=f"drift: rebalance regularisation, keep lr·wd → wd "
                                       f"×{1 / factor:.3f}"))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "follower": self.follower.state_dict(), "start": self._start, "peak": self._peak,
            "trigger": self._trigger, "last_end": self._last_end,
            "val_ph": self._val_ph.state_dict(), "val_moments": self._val_moments.state_dict(),
            "seen": self._seen, "val_note": list(self._val_note) if self._val_note else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.follower.load_state_dict(state["follower"])
        self._start, self._peak = state["start"], float(state["peak"])
        self._trigger, self._last_end = str(state["trigger"]), int(state["last_end"])
        self._val_ph.load_state_dict(state["val_ph"])
        self._val_moments.load_state_dict(state["val_moments"])
        self._seen = state["seen"]
        note = state.get("val_note")
        self._val_note = (int(note[0]), str(note[1])) if note else None
