"""Guard: keeps a run alive through NaNs, infs and loss spikes.

Every real update the Regime asks :meth:`Guard.check` for a verdict on the (rank-reduced)
signals before anything is decided:

* ``"skip"``  — the loss or gradient is non-finite: the optimizer is not stepped and the
  gradients are zeroed, so NaN never reaches the weights;
* ``"rollback"`` — the loss spiked (robust z-score ``(L − median) / (1.4826·MAD)`` over the
  last ``spike_window`` healthy losses above ``spike_threshold``, once ``min_history``
  losses are known) or ``max_bad_steps`` consecutive steps were skipped: the Regime
  restores the last known-good snapshot and cuts the lr by ``lr_cut`` at once (an urgent
  proposal), then the guard gives it back in up to 10 equal factors over ``reintro_steps``
  steps (each one logged);
* ``"shift"`` — the first loss after a rollback, computed by the restored known-good
  weights, spikes too: the data changed, not the weights. The loss history restarts at
  the new level, the rollback is not counted, and the Regime logs a ``drift`` event and
  trains on (a real shift used to end in ``GuardError`` after a few rollbacks);
* ``"rollback"`` also answers a training-loss drift alarm (the ``drift`` signal's
  ``drift.alarm``, raised by a persistent rise too small to be a spike, once the recent
  losses sit above the snapshot's) with the *drift check*: the current weights are kept
  aside, the known-good snapshot is restored (not charged to the budget, no lr cut) and its
  loss is measured on the next ``drift_check_steps`` batches without updating it (those
  updates are skipped, each a ``skip`` event). If its mean sits above the losses those
  weights had when the snapshot was taken by more than ``drift_check_z`` standard errors,
  the data changed: the current weights come back and the next step's verdict is
  ``"shift"`` (a ``drift`` event; ``auto``'s drift response re-warms only then). If not,
  and the restored weights are clearly better than the current ones, the weights or the lr
  caused the rise: training goes on from the snapshot with the lr cut as after a rollback
  (and given back); else the alarm was noise and the current weights come back. Both end
  with a ``"checked"`` verdict (an ``ok`` step with an event saying what was found);
* a rollback beyond ``max_rollbacks`` within ``rollback_window`` steps still restores the
  snapshot, so the restored weights can tell a shift from a divergence first: if their
  first loss spikes too it is a shift (not charged); otherwise :class:`GuardError` is
  raised then: the run is not recovering and a person should look (the message names the
  last known-good snapshot, on disk when ``log_dir`` is set).

It also offers an adaptive clipping threshold, from earlier steps only: z-score clipping
(as ZClip) with ``clip_z`` — exponential moving mean ``μ`` and variance ``σ²`` of the
gradient norm (factor ``clip_beta``, started from the plain mean and variance of the first
``clip_min_history`` norms; a clipped step enters them at its clipped value), and the
threshold ``μ + clip_z·σ``, so a norm whose z-score exceeds ``clip_z`` is clipped to it —
and/or the ``clip_percentile``-th percentile of the last ``clip_window`` norms (the
tighter wins). Both are off by default; ``Regime(clip_norm="adaptive")`` turns the
z-score on (``clip_z=3``) unless the guard was given a percentile, and ``auto`` does so.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from cadence.protocol import Part, Proposal, Signals
from cadence.stats import MAD_TO_SIGMA, median


class GuardError(RuntimeError):
    """Raised when the guard gives up: rollbacks keep happening."""


class Guard(Part):
    """Skip / rollback / cool-down / gradual re-introduction, plus adaptive clipping.

    Not a controller: the Regime asks it for a verdict before any controller runs, and
    only it may bypass the arbiter's per-step clamp (its lr cut is urgent). Like every
    part, it records its constructor arguments (``get_config()``) for ``config.json``.

    Args:
        spike_threshold: robust z-score of the loss above which a step is a spike.
        spike_window: number of recent healthy losses the median/MAD are taken over.
        min_history: healthy losses needed before spikes are detected.
        spike_floor: the MAD-based scale is at least ``spike_floor × |median|``, so a nearly
            constant loss does not turn tiny wiggles into spikes.
        scale_floor: the scale is also at least ``scale_floor × |first healthy loss|``: late
            in training, when the loss is small, mini-batch noise is large relative to it
            (0.3 against a median of 0.05) and is not a spike; the default 0.05 asks a
            spike to rise by 0.3 × the initial loss (z = 6).
        max_bad_steps: consecutive skipped steps that trigger a rollback.
        lr_cut: factor applied to the lr on rollback, in (0, 1).
        reintro_steps: steps over which the cut is given back (0: never).
        max_rollbacks: rollbacks tolerated within ``rollback_window`` steps.
        rollback_window: window, in steps, for counting rollbacks.
        clip_percentile: percentile of recent gradient norms used as the clipping threshold
            (``None``: no adaptive clipping).
        clip_window: number of recent gradient norms kept for the percentile.
        clip_min_history: norms needed before adaptive clipping starts.
        clip_z: z-score of the gradient norm above which it is clipped (``None``: off).
        clip_beta: factor of the moving mean and variance of the norm for ``clip_z``.
        drift_check_steps: losses of the restored weights averaged by the drift check (0
            turns the check off: then no training-loss rise is confirmed as a shift).
        drift_check_z: standard errors above the snapshot's own losses that make a shift.
    """

    name = "guard"

    def __init__(
        self,
        spike_threshold: float = 6.0,
        spike_window: int = 50,
        min_history: int = 20,
        spike_floor: float = 0.01,
        scale_floor: float = 0.05,
        max_bad_steps: int = 3,
        lr_cut: float = 0.5,
        reintro_steps: int = 100,
        max_rollbacks: int = 3,
        rollback_window: int = 1000,
        clip_percentile: float | None = None,
        clip_window: int = 200,
        clip_min_history: int = 20,
        clip_z: float | None = None,
        clip_beta: float = 0.97,
        drift_check_steps: int = 5,
        drift_check_z: float = 3.0,
    ) -> None:
        if not spike_threshold > 0:
            raise ValueError(f"spike_threshold must be > 0, got {spike_threshold!r}")
        for arg, val, lo in (
            ("spike_window", spike_window, 3),
            ("min_history", min_history, 3),
            ("max_bad_steps", max_bad_steps, 1),
            ("reintro_steps", reintro_steps, 0),
            ("max_rollbacks", max_rollbacks, 0),
            ("rollback_window", rollback_window, 1),
            ("clip_window", clip_window, 1),
            ("clip_min_history", clip_min_history, 1),
            ("drift_check_steps", drift_check_steps, 0),
        ):
            if not isinstance(val, int) or val < lo:
                raise ValueError(f"{arg} must be an int >= {lo}, got {val!r}")
        if not 0.0 < lr_cut <= 1.0:
            raise ValueError(f"lr_cut must be in (0, 1], got {lr_cut!r}")
        if spike_floor < 0 or scale_floor < 0:
            raise ValueError(
                f"spike_floor and scale_floor must be >= 0, got {spike_floor!r}, {scale_floor!r}"
            )
        if clip_percentile is not None and not 0.0 < clip_percentile <= 100.0:
            raise ValueError(
                f"clip_percentile must be in (0, 100] or None, got {clip_percentile!r}"
            )
        if clip_z is not None and not (clip_z > 0 and math.isfinite(clip_z)):
            raise ValueError(f"clip_z must be a finite number > 0 or None, got {clip_z!r}")
        if not 0.0 < clip_beta < 1.0:
            raise ValueError(f"clip_beta must be in (0, 1), got {clip_beta!r}")
        if not drift_check_z > 0:
            raise ValueError(f"drift_check_z must be > 0, got {drift_check_z!r}")
        self.spike_threshold = spike_threshold
        self.spike_window = spike_window
        self.min_history = min(min_history, spike_window)
        self.spike_floor = spike_floor
        self.scale_floor = scale_floor
        self.first_loss: float | None = None
        self.max_bad_steps = max_bad_steps
        self.lr_cut = lr_cut
        self.reintro_steps = reintro_steps
        self.max_rollbacks = max_rollbacks
        self.rollback_window = rollback_window
        self.clip_percentile = clip_percentile
        self.clip_window = clip_window
        self.clip_min_history = clip_min_history
        self.clip_z = None if clip_z is None else float(clip_z)
        self.clip_beta = float(clip_beta)
        self.norm_mean = 0.0  # moving mean and variance of the gradient norm (clip_z)
        self.norm_var = 0.0
        self.norm_count = 0
        self.drift_check_steps = drift_check_steps
        self.drift_check_z = float(drift_check_z)
        # state
        self.losses: deque[float] = deque(maxlen=spike_window)
        self.loss_steps: deque[int] = deque(maxlen=spike_window)
        self.norms: deque[float] = deque(maxlen=clip_window)
        self.bad_streak = 0
        self.skips = 0
        self.rollbacks: list[int] = []
        self.owed = 1.0  # lr factor still to give back after cuts
        self.reintro_factor = 1.0  # one increment
        self.next_reintro = 0  # step of the next increment
        self.reintro_every = 1
        self.verify_after_rollback = False  # is the next loss the restored weights' first?
        self.pending_stop: str | None = None  # over the rollback budget: stop unless a shift
        # the drift check: the snapshot's own loss level (median, scale, step) when taken,
        # the check under way (its trigger, the current weights' level, the restored
        # weights' losses so far), an lr cut it concluded, and the last shift's z
        self.reference: dict[str, Any] | None = None
        self.checking: dict[str, Any] | None = None
        self.pending_cut: str | None = None
        self.concluded: list[str] | None = None  # [outcome, verdict, reason] of a check
        self.shift_z = 0.0

    # -- verdict ------------------------------------------------------------------------------
    def spike_score(self, loss: float, exact: bool = True) -> float:
        """Robust z-score of ``loss`` against the recent healthy losses (0 without history).

        The scale is ``1.4826·MAD`` floored as described in the class docstring; a loss at or
        below the median gets a non-positive score without computing the MAD. With
        ``exact=False`` a score the floors alone keep under ``spike_threshold`` is returned
        without the MAD either (it only bounds the score: ``check`` compares, no more).
        """
        if len(self.losses) < self.min_history:
            return 0.0
        med = median(self.losses)
        if loss <= med:  # at or below the median: never a spike, skip the MAD
            return (loss - med) / max(self.spike_floor * abs(med), 1e-8)
        first = abs(self.first_loss) if self.first_loss is not None else 0.0
        floor = max(self.spike_floor * abs(med), self.scale_floor * first, 1e-8)
        if not exact and (loss - med) / floor <= self.spike_threshold:
            return (loss - med) / floor
        mad = median(abs(x - med) for x in self.losses)
        return (loss - med) / max(MAD_TO_SIGMA * mad, floor)

    def check(self, signals: Signals, step: int, drift_checks: bool = True) -> tuple[str, str]:
        """Verdict for this step: ``("ok" | "skip" | "rollback" | "shift" | "checked",
        reason)``; ``"checked"`` (a drift check ended without a shift) is an ``ok`` step
        with something to log. ``drift_checks=False`` leaves a drift alarm unanswered (the
        Regime passes it while a trial runs: the trial caused the rise and judges it).

        Records healthy losses and gradient norms; raises :class:`GuardError` when a rollback
        would exceed ``max_rollbacks`` within ``rollback_window`` steps.
        """
        loss = float(signals.get("loss", math.nan))
        norm = float(signals.get("grad_norm", math.nan))
        finite = signals.get("nonfinite", 0.0) == 0 and math.isfinite(loss) and math.isfinite(norm)
        restored_first = self.verify_after_rollback  # the restored weights' first loss?
        if finite:  # a skipped step leaves the weights as restored: judge the next one
            self.verify_after_rollback = False
        z = self.spike_score(loss, exact=False) if finite else math.nan
        if restored_first and z > self.spike_threshold and self.rollbacks:
            # the known-good weights spike too: the data changed, not the weights
            self.rollbacks.pop()
            self.pending_stop = None
            self.losses.clear()
            self.loss_steps.clear()
            self._record(loss, norm, step)
            self.shift_z = z
            self.reference = None  # the snapshot's losses belong to the old data
            return "shift", (
                f"loss shift: the restored known-good weights also give loss={loss:.4g} "
                f"(robust z={z:.1f}), so the data changed; the loss baseline restarts here and "
                "the rollback does not count towards max_rollbacks"
            )
        if restored_first and self.pending_stop is not None:
            message, self.pending_stop = self.pending_stop, None
            raise GuardError(message)
        if finite and self.checking is not None:
            return self._drift_evidence(loss, step)
        if finite and self.concluded is not None:  # a drift check's verdict, on this loss
            _, verdict, reason = self.concluded
            self.concluded = None
            self._record(loss, norm, step)
            return verdict, reason
        if not finite:
            self.skips += 1
            self.bad_streak += 1
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            value = loss if not math.isfinite(loss) else norm
            reason = f"non-finite {what} ({value})"
            if self.bad_streak >= self.max_bad_steps:
                return self._rollback(
                    step, f"{self.bad_streak} consecutive bad steps, last: {reason}"
                )
            return "skip", reason
        if z > self.spike_threshold:
            self.bad_streak += 1
            return self._rollback(
                step,
                f"loss spike: loss={loss:.4g}, robust z={z:.1f} > {self.spike_threshold:g} "
                f"over the last {len(self.losses)} steps",
            )
        if drift_checks and signals.get("drift.alarm", 0.0) > 0 and self._can_check(loss):
            return self._start_check(loss, step)
        self._record(loss, norm, step)
        return "ok", ""

    # -- the drift check: did the data change, or the weights? --------------------------------
    def mark_reference(self, step: int) -> None:
        """A snapshot was taken at ``step``: keep the healthy losses its weights were judged
        against. A rollback to it restores them (:meth:`rewind`), and the drift check
        measures the restored weights against them."""
        self.reference = {"step": step, "losses": list(self.losses),
                          "steps": list(self.loss_steps)}

    def _reference_level(self) -> tuple[float, float] | None:
        """Median and robust spread of the snapshot's losses (``None`` if too few)."""
        ref = self.reference
        if ref is None or len(ref["losses"]) < self.min_history:
            return None
        med = median(ref["losses"])
        mad = median(abs(x - med) for x in ref["losses"])
        return med, max(MAD_TO_SIGMA * mad, self.spike_floor * abs(med), 1e-8)

    def _recent_mean(self, loss: float) -> float:
        """Mean of this loss and the healthy ones just before it (a drift check's window)."""
        k = self.drift_check_steps - 1
        recent = [*(list(self.losses)[-k:] if k > 0 else []), loss]  # [-0:] would be all
        return sum(recent) / len(recent)

    def _can_check(self, loss: float) -> bool:
        """A drift check may start: none under way, and the recent losses sit above the
        snapshot's (below them, an alarm on the trend is no rise the snapshot could explain;
        at a near-zero loss such alarms skipped batches for nothing)."""
        level = self._reference_level()
        return (self.drift_check_steps > 0 and self.checking is None and self.pending_stop is None
                and not self.verify_after_rollback and level is not None
                and self._recent_mean(loss) > level[0])

    def _start_check(self, loss: float, step: int) -> tuple[str, str]:
        """Restore the snapshot (not charged, no lr cut) to see how its weights fare now;
        the Regime keeps the current weights aside meanwhile."""
        level = self._reference_level()
        assert level is not None and self.reference is not None
        ref_step = int(self.reference["step"])
        current = self._recent_mean(loss)
        trigger = f"drift alarm of step {step - 1} on the training loss's trend"
        self.checking = {"since": step, "current": current, "losses": [],
                         "ref": [level[0], level[1], float(ref_step)], "trigger": trigger,
                         "history": [list(self.losses), list(self.loss_steps)]}
        self.bad_streak = 0
        return "rollback", (
            f"drift check: the training loss rose ({trigger}; recent loss {current:.4g} vs "
            f"{level[0]:.4g} at the snapshot of step {ref_step}): the known-good weights are "
            f"restored for {self.drift_check_steps} steps, without updating them, without an "
            f"lr cut and not counted as a rollback, to see whether their loss rose too (then "
            f"the data changed); the current weights are kept aside meanwhile"
        )

    def _drift_evidence(self, loss: float, step: int) -> tuple[str, str]:
        """One more loss of the restored weights; once there are enough, the outcome:
        ``"shift"`` (they rose too) or ``"noise"`` (they did not, nor are they clearly
        better: the Regime goes back to the current weights), or ``"weights"`` (they are
        clearly better on the same data: training goes on from them with a cut lr). The
        verdict (``"shift"`` or ``"checked"``) comes with the next step's loss."""
        assert self.checking is not None
        chk = self.checking
        chk["losses"].append(loss)
        self.bad_streak = 0
        n = len(chk["losses"])
        measuring = (f"drift check: measuring the restored weights of step "
                     f"{int(chk['ref'][2])} on new batches without updating them "
                     f"({n}/{self.drift_check_steps})")
        if n < self.drift_check_steps:
            return "skip", measuring
        self.checking = None
        med, scale, ref_step = chk["ref"]
        restored = sum(chk["losses"]) / n
        se = scale / math.sqrt(n)
        z = (restored - med) / se
        gain = (chk["current"] - restored) / (se * math.sqrt(2.0))
        seen = (f"the restored weights of step {int(ref_step)} average loss {restored:.4g} "
                f"over {n} steps against {med:.4g} when they were saved (z={z:+.1f}); the "
                f"current weights had {chk['current']:.4g}")
        history = chk["history"]
        if z > self.drift_check_z:
            self.shift_z = z
            self.reference = None  # the snapshot's losses belong to the old data
            self.losses.clear()  # the baseline restarts with the next loss
            self.loss_steps.clear()
            self.concluded = ["shift", "shift", (
                f"loss shift (drift check started at step {chk['since']}, {chk['trigger']}): "
                f"{seen}, so the data changed; training goes on from the current weights and "
                "the loss baseline restarts here")]
        elif gain > self.drift_check_z:
            self.pending_cut = (f"drift check: no data shift: {seen}; the rise came from the "
                                f"weights or the lr, so the lr is cut")
            for k, x in enumerate(chk["losses"]):  # the restored weights' history goes on
                self.losses.append(x)
                self.loss_steps.append(step - n + 1 + k)
            self.concluded = ["weights", "checked", (
                f"drift check ended: no data shift: {seen}; the restored weights are better "
                f"(z={gain:+.1f}): the rise came from the weights or the lr; training goes on "
                "from the restored weights with a cut lr")]
        else:
            self.losses = deque(history[0], maxlen=self.spike_window)
            self.loss_steps = deque(history[1], maxlen=self.spike_window)
            self.concluded = ["noise", "checked", (
                f"drift check ended: no data shift: {seen}; nor are the restored weights "
                "clearly better, so the alarm was noise: training goes on from the current "
                "weights, the lr unchanged")]
        return "skip", measuring

    @property
    def check_outcome(self) -> str | None:
        """``"shift"``, ``"noise"`` or ``"weights"`` once a drift check has ended (until its
        verdict is given), else ``None``: the Regime puts the current weights back unless
        it is ``"weights"``."""
        return self.concluded[0] if self.concluded else None

    def _record(self, loss: float, norm: float, step: int) -> None:
        """A healthy step: its loss and gradient norm join the history."""
        self.bad_streak = 0
        if self.first_loss is None:
            self.first_loss = loss
        self.losses.append(loss)
        self.loss_steps.append(step)
        self.norms.append(norm)
        self._norm_moments(norm)

    def _norm_moments(self, norm: float) -> None:
        """Fold a healthy step's norm (clipped, if it was) into the moving mean/variance."""
        if self.clip_z is None:
            return
        self.norm_count += 1
        n = self.clip_min_history
        if self.norm_count < n:
            return
        if self.norm_count == n:  # warm: start from the plain moments of the first n
            first = list(self.norms)[-n:]
            self.norm_mean = sum(first) / n
            self.norm_var = sum((x - self.norm_mean) ** 2 for x in first) / n
            return
        x = min(norm, self.norm_mean + self.clip_z * math.sqrt(self.norm_var))
        b = self.clip_beta
        delta = x - self.norm_mean
        self.norm_mean += (1 - b) * delta
        self.norm_var = b * (self.norm_var + (1 - b) * delta * delta)

    def rewind(self, step: int) -> None:
        """Go back to the losses the snapshot of ``step`` (which a rollback restored) was
        judged against, so the restored, older parameters are judged against the history
        they belong to (the window may hold none of them any more)."""
        ref = self.reference
        if ref is not None and ref["step"] == step:
            self.losses = deque(ref["losses"], maxlen=self.spike_window)
            self.loss_steps = deque(ref["steps"], maxlen=self.spike_window)
            return
        while self.loss_steps and self.loss_steps[-1] > step:
            self.loss_steps.pop()
            self.losses.pop()

    def _rollback(self, step: int, reason: str) -> tuple[str, str]:
        """Roll back. Over the budget, roll back once more all the same and decide on the
        restored weights' first loss: a spike there too is a data shift (not charged);
        anything else stops the run with :class:`GuardError`."""
        recent = [s for s in self.rollbacks if step - s < self.rollback_window]
        if len(recent) >= self.max_rollbacks:
            self.pending_stop = (
                f"guard stopped the run at step {step}: {reason}; this was rollback "
                f"{len(recent) + 1} within {self.rollback_window} steps (max_rollbacks="
                f"{self.max_rollbacks}; earlier rollbacks at steps {recent}) and the restored "
                "weights did not show a data shift"
            )
        self.rollbacks = recent + [step]
        self.bad_streak = 0
        self.checking = self.concluded = None  # a real rollback ends a drift check
        self.verify_after_rollback = True
        return "rollback", reason

    def after_rollback(self, step: int, reason: str | None = None) -> list[Proposal]:
        """The urgent lr cut to apply now, and the plan to give it back gradually (none
        when the rollback only restored the snapshot for a drift check)."""
        if self.checking is not None and reason is None:
            return []
        self.owed /= self.lr_cut
        if self.reintro_steps > 0 and self.owed > 1.0:
            n = min(10, self.reintro_steps)
            self.reintro_every = max(1, self.reintro_steps // n)
            self.reintro_factor = self.owed ** (1.0 / n)
            self.next_reintro = step + self.reintro_every
        what = reason or "rolled back"
        return [Proposal(
            "lr",
            factor=self.lr_cut,
            urgent=True,
            source=self.name,
            reason=f"{what}: lr x{self.lr_cut:g}, given back over {self.reintro_steps} steps",
        )]

    # -- re-introduction ----------------------------------------------------------------------
    def reintroduce(self, step: int) -> list[Proposal]:
        """The next factor of the lr cut by rollbacks to give back, when one is due (or the
        cut a drift check concluded on)."""
        if self.pending_cut is not None:
            reason, self.pending_cut = self.pending_cut, None
            return self.after_rollback(step, reason)
        if self.owed <= 1.0 + 1e-12 or self.reintro_steps == 0 or step < self.next_reintro:
            return []
        f = min(self.reintro_factor, self.owed)
        self.owed /= f
        if self.owed < 1.0 + 1e-9:
            self.owed = 1.0
        self.next_reintro = step + self.reintro_every
        return [
            Proposal(
                "lr",
                factor=f,
                source=self.name,
                reason=f"re-introducing lr after rollback: x{f:.3g}",
            )
        ]

    def clip_threshold(self) -> float | None:
        """Adaptive clipping threshold from earlier gradient norms, or None: the tighter
        of the z-score threshold ``μ + clip_z·σ`` and the percentile (where on)."""
        out: list[float] = []
        if self.clip_z is not None and self.norm_count >= self.clip_min_history:
            out.append(self.norm_mean + self.clip_z * math.sqrt(self.norm_var))
        if self.clip_percentile is not None and len(self.norms) >= self.clip_min_history:
            hist = sorted(self.norms)
            pos = (len(hist) - 1) * self.clip_percentile / 100.0
            lo = math.floor(pos)
            hi = min(lo + 1, len(hist) - 1)
            out.append(hist[lo] + (hist[hi] - hist[lo]) * (pos - lo))
        return min(out) if out else None

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": list(self.losses),
            "loss_steps": list(self.loss_steps),
            "norms": list(self.norms),
            "bad_streak": self.bad_streak,
            "first_loss": self.first_loss,
            "skips": self.skips,
            "rollbacks": list(self.rollbacks),
            "owed": self.owed,
            "reintro_factor": self.reintro_factor,
            "next_reintro": self.next_reintro,
            "reintro_every": self.reintro_every,
            "verify_after_rollback": self.verify_after_rollback,
            "pending_stop": self.pending_stop,
            "reference": self.reference,
            "checking": self.checking,
            "pending_cut": self.pending_cut,
            "concluded": self.concluded,
            "norm_moments": [self.norm_mean, self.norm_var, self.norm_count],
            "shift_z": self.shift_z,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.losses = deque((float(x) for x in state["losses"]), maxlen=self.spike_window)
        self.loss_steps = deque((int(x) for x in state["loss_steps"]), maxlen=self.spike_window)
        self.norms = deque((float(x) for x in state["norms"]), maxlen=self.clip_window)
        self.bad_streak = int(state["bad_streak"])
        self.first_loss = state["first_loss"]
        self.skips = int(state["skips"])
        self.rollbacks = [int(s) for s in state["rollbacks"]]
        self.owed = float(state["owed"])
        self.reintro_factor = float(state["reintro_factor"])
        self.next_reintro = int(state["next_reintro"])
        self.verify_after_rollback = bool(state.get("verify_after_rollback", False))
        self.pending_stop = state.get("pending_stop")
        self.reintro_every = int(state["reintro_every"])
        ref = state.get("reference")
        self.reference = None if ref is None else {
            "step": int(ref["step"]), "losses": [float(x) for x in ref["losses"]],
            "steps": [int(x) for x in ref["steps"]]}
        chk = state.get("checking")
        self.checking = None if chk is None else {
            "since": int(chk["since"]), "current": float(chk["current"]),
            "losses": [float(x) for x in chk["losses"]], "ref": [float(x) for x in chk["ref"]],
            "trigger": str(chk["trigger"]),
            "history": [[float(x) for x in chk["history"][0]],
                        [int(x) for x in chk["history"][1]]]}
        done = state.get("concluded")
        self.concluded = None if done is None else [str(x) for x in done]
        self.pending_cut = state.get("pending_cut")
        self.shift_z = float(state.get("shift_z", 0.0))
        moments = state.get("norm_moments", [0.0, 0.0, 0])
        self.norm_mean, self.norm_var = float(moments[0]), float(moments[1])
        self.norm_count = int(moments[2])


__all__ = ["Guard", "GuardError"]
