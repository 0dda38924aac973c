"""Trials: tentative changes that the evidence keeps or reverts (bounded experimentation).

A controller marks a proposal as a trial with ``Proposal(..., trial=TrialSpec(...))``.
:class:`Trials` then owns it: it applies it at once, lets ``burn_in`` steps pass (the
optimizer settles to the new value), measures the training loss for ``window`` steps, and
compares that arm with the incumbent's counterfactual — the trend fitted to up to
three windows of steps before the trial (at the current value), extrapolated. Both arms
are fitted as lines in log-loss against log(step + 1) (``log`` makes the test
scale-free; a power law is a line there) and projected to ``horizon`` steps after the
window; the trial is **kept** iff its projection is lower by more than ``z`` standard
errors (serial correlation of the mini-batch noise taken into account through the lag-1
autocorrelation of the residuals; see :func:`verdict`) and by more than
``min_effect``. Otherwise it is **reverted** (its factor is undone). A guard action
during a trial reverts it at once. A trial reverted as *harmful* — its projection worse
by as many standard errors as a keep needs, and its window's mean loss ×1.25 above the
baseline's (``HARM_RISE``) — also asks for the weights it started from
(:attr:`Trials.restore_to`): the Regime snapshots them when a trial opens, and reverting
the lr alone would leave the damage the experiment did (on the GRU a ×2 step past the
stable lr, run for its whole window, cost 6 points of test accuracy that the lr revert
did not give back).

Why these choices (research notes, ``trials.md``): comparing raw before/after means
favours "after" because the loss falls by design, hence the trend; a level-only
comparison favours smaller learning rates (short-horizon bias: a smaller lr lowers the
noise floor at once, its lost progress shows only later), hence the projection horizon,
which weighs the slope. A linear extrapolation of a convex, decreasing curve is
optimistic for the incumbent, so the test errs towards reverting. The false-keep rate of
this test on pure-noise losses is measured by ``tests/test_trials.py`` and stated in
docs/auto.md.

Budget: at most ``max_trials`` trials, and at most ``max_share`` of the planned steps
spent inside trials; one trial at a time; while one is open, other controllers'
proposals for the same knob are held back (the guard's urgent ones pass). Every start,
keep and revert is an Event of kind ``"trial"`` whose ``signals`` hold the evidence.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cadence.checks import check_float, check_int
from cadence.events import Event
from cadence.protocol import Proposal, TrialOutcome, TrialSpec


@dataclass
class _Open:
    id: int
    proposal: Proposal
    start: int
    baseline: list[tuple[int, float]]
    points: list[tuple[int, float]]

    @property
    def spec(self) -> TrialSpec:
        assert self.proposal.trial is not None
        return self.proposal.trial

    @property
    def end(self) -> int:
        return self.start + self.spec.burn_in + self.spec.window


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float, float, float, float]:
    """Least squares ``y = a + b·t``: ``(a, b, t_mean, Sxx, residual variance)``."""
    n = len(points)
    tm = sum(t for t, _ in points) / n
    ym = sum(y for _, y in points) / n
    sxx = sum((t - tm) ** 2 for t, _ in points)
    b = sum((t - tm) * (y - ym) for t, y in points) / sxx if sxx > 0 else 0.0
    a = ym - b * tm
    resid = [y - a - b * t for t, y in points]
    var = sum(r * r for r in resid) / max(n - 2, 1)
    return a, b, tm, sxx, var


def _lag1(points: Sequence[tuple[float, float]], a: float, b: float) -> tuple[float, float]:
    """Sums for the lag-1 autocorrelation of the residuals: ``(Σ r_i r_{i+1}, Σ r_i²)``."""
    resid = [y - a - b * t for t, y in points]
    return (sum(x * y for x, y in zip(resid, resid[1:], strict=False)),
            sum(r * r for r in resid))


def serial_correlation(chunks: Sequence[Sequence[tuple[float, float]]]) -> float:
    """Lag-1 autocorrelation of the residuals of a line fitted to each chunk, pooled and
    corrected for its small-sample bias of about ``-(1 + 3ρ)/n`` (Marriott & Pope);
    uncorrected it lets serially correlated noise pass as an effect. In [0, 0.95]."""
    num = den = 0.0
    n = 0
    for c in chunks:
        if len(c) < 4:
            continue
        a, b, *_ = fit_line(c)
        cn, cd = _lag1(c, a, b)
        num, den, n = num + cn, den + cd, n + len(c)
    if den <= 0:
        return 0.0
    raw = num / den
    size = n / max(1, sum(len(c) >= 4 for c in chunks))
    return min(max(raw + (1 + 3 * raw) / size, 0.0), 0.95)


def _mean(points: Sequence[tuple[float, float]]) -> float:
    return sum(y for _, y in points) / len(points)


def _log_time(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(math.log(t + 1.0), y) for t, y in points]


def compare(
    baseline: Sequence[tuple[float, float]], trial: Sequence[tuple[float, float]],
    horizon: int, history: Sequence[tuple[float, float]] | None = None,
) -> dict[str, float]:
    """Evidence that ``trial`` beats the trend of ``baseline``, both projected to
    ``horizon`` steps after the trial's last point: ``effect`` (trial − incumbent, in the
    units of ``y``; < 0 favours the trial), its standard error ``se``, ``z = effect/se``,
    the residual lag-1 autocorrelation ``rho`` (from both windows and the incumbent's
    earlier ``history``, in window-sized chunks) and the noise ``sigma``.

    Both trends are lines in ``log(step + 1)``: a training loss falls roughly as a power
    of the step, and a line in the step itself, extrapolated from early in training,
    predicts a fall no run keeps up (it made every early trial look lost)."""
    baseline, trial = _log_time(baseline), _log_time(trial)
    a0, b0, t0, s0, v0 = fit_line(baseline)
    a1, b1, t1, s1, v1 = fit_line(trial)
    end = math.log(math.exp(trial[-1][0]) + horizon)
    effect = (a1 + b1 * end) - (a0 + b0 * end)
    w = len(baseline)
    earlier = history or []
    chunks = [earlier[i:i + w] for i in range(0, len(earlier), w)] + [baseline, trial]
    rho = serial_correlation(chunks)
    n = min(len(baseline), len(trial))
    inflate = (1 + rho) / (1 - rho)
    var = inflate * (v0 * (1 / len(baseline) + (end - t0) ** 2 / max(s0, 1e-12))
                     + v1 * (1 / len(trial) + (end - t1) ** 2 / max(s1, 1e-12)))
    se = math.sqrt(max(var, 0.0))
    z = effect / se if se > 0 else math.copysign(math.inf, effect) if effect else 0.0
    return {"effect": effect, "se": se, "z": z,
            "rho": rho, "n_eff": n / inflate, "sigma": math.sqrt(max((v0 + v1) / 2, 0.0)),
            "slope_incumbent": b0, "slope_trial": b1}


#: Length of the incumbent's baseline, in trial windows (when that much history at the
#: current value exists; one window at least).
BASELINE_WINDOWS = 3
#: How far (in log-loss: ×1.25) a harmful trial's mean loss must rise above the baseline's
#: before its starting weights are restored. Below it the trial's steps still made
#: progress worth keeping: of the harmful reverts seen on the bench, the GRU's (+0.52) and
#: mnist1d-cnn's (+0.30, +0.42) gained from the restore, the wide MLPs' (+0.02, +0.16) lost.
HARM_RISE = math.log(1.25)
#: Effectively independent losses per arm below which a keep needs more evidence: with
#: strongly correlated noise a short window holds little information and its error
#: estimate is itself unreliable, so the bar rises as ``z · sqrt(MIN_N_EFF / n_eff)``.
MIN_N_EFF = 6.0


def verdict(evidence: Mapping[str, float], z: float, min_effect: float) -> tuple[bool, float]:
    """``(keep, z needed)`` for the evidence of :func:`compare`: keep iff the effect is
    below ``-needed · se`` and below ``-min_effect``."""
    needed = z * math.sqrt(max(1.0, MIN_N_EFF / max(evidence["n_eff"], 1e-9)))
    effect = evidence["effect"]
    return effect < -needed * evidence["se"] and effect < -min_effect, needed


class Trials:
    """Opens, judges and closes trials (see the module docstring).

    Args:
        total_steps: the planned run (for ``max_share``); ``None``: no share limit.
        max_trials: most trials in one run.
        max_share: most of ``total_steps`` spent inside trials (burn-in + window).
        z: standard errors the trial must win by (one-sided; 2.0 ≈ 2.3 % on Gaussian noise).
        min_effect: smallest improvement kept, in log-loss (1e-3 ≈ 0.1 % of the loss).
        max_factor: the largest move one trial may make (a factor, either way).
    """

    def __init__(
        self,
        total_steps: int | None,
        max_trials: int = 8,
        max_share: float = 0.4,
        z: float = 2.0,
        min_effect: float = 1e-3,
        max_factor: float = 4.0,
    ) -> None:
        self.total_steps = total_steps
        self.max_trials = check_int("max_trials", max_trials, 0)
        self.max_share = check_float("max_share", max_share, 0.0, 1.0)
        self.z = check_float("z", z, 0.0)
        self.min_effect = check_float("min_effect", min_effect, 0.0)
        self.max_factor = check_float("max_factor", max_factor, 1.0)
        self._revert: list[Proposal] = []  # a trial aborted by the guard, undone next step
        self.history: deque[tuple[int, float]] = deque(maxlen=4096)
        self.open: _Open | None = None
        self.outcomes: list[TrialOutcome] = []
        self.steps_spent = 0
        self._log_scale = True
        self.clean_from = 0
        #: set when a trial was reverted as harmful: the step it started at, whose
        #: weights the Regime restores (and clears) in the same update
        self.restore_to: int | None = None
        self.stopped = False  # after a restart: the lr is for validation to move now

    # -- the per-step calls -------------------------------------------------------------------
    def record(self, step: int, loss: float) -> None:
        """The training loss of update ``step`` (call once per real update)."""
        if not math.isfinite(loss):
            return
        if loss <= 0:
            self._log_scale = False
        self.history.append((step, loss))
        if self.open is not None:
            self.open.points.append((step, loss))

    def judge(
        self, proposals: list[Proposal], step: int, signals: Mapping[str, float]
    ) -> tuple[list[Proposal], list[Event]]:
        """Close a trial whose window is over, open one proposed now (within budget), and
        hold back other proposals for a knob under trial. Returns the proposals for the
        arbiter and the trial Events."""
        events: list[Event] = []
        out, self._revert = self._revert, []
        if self.open is not None and step >= self.open.end:
            out += self._close(step, signals, events)
        for p in proposals:
            if p.trial is None:
                if self.open is not None and p.knob == self.open.proposal.knob and not p.urgent:
                    continue  # the knob under trial is the trial's alone
                out.append(p)
            elif self._can_open(p, step):
                out.append(self._start(p, step, signals, events))
        return out, events

    def pop_restore(self) -> int | None:
        """The start of a trial just reverted as harmful (whose weights the Regime
        restores), once; ``None`` otherwise."""
        start, self.restore_to = self.restore_to, None
        return start

    def abort(self, step: int, why: str, signals: Mapping[str, float]) -> list[Event]:
        """The guard acted (skip or rollback) during a trial: end it as reverted; its
        factor is undone at the next :meth:`judge`."""
        if self.open is None:
            return []
        events: list[Event] = []
        self._revert.append(
            self._finish(step, False, {"aborted": 1.0}, f"aborted: {why}", signals, events))
        return events

    def stop(self, step: int, why: str, signals: Mapping[str, float]) -> list[Event]:
        """No more trials in this run (a restart: the training loss misled them, validation
        moves the lr from now on); one under way ends as reverted."""
        events = self.abort(step, why, signals)
        self.stopped = True
        self.history.clear()
        return events

    # -- opening and closing ------------------------------------------------------------------
    def budget_left(self, spec: TrialSpec, step: int) -> bool:
        """True iff one more trial of ``spec`` fits the budget and ends within the run."""
        length = spec.burn_in + spec.window
        if self.stopped or len(self.outcomes) >= self.max_trials:
            return False
        if self.total_steps is None:
            return True
        return (self.steps_spent + length <= self.max_share * self.total_steps
                and step + length < self.total_steps)

    def _baseline(self, step: int, window: int) -> list[tuple[int, float]]:
        """The incumbent's recent losses: since the last trial's value settled, at most
        ``BASELINE_WINDOWS`` windows (a long baseline pins its trend down)."""
        points: list[tuple[int, float]] = []
        for pt in reversed(self.history):  # newest first: stops after a few windows
            if pt[0] >= step:
                continue
            if pt[0] < self.clean_from or len(points) == BASELINE_WINDOWS * window:
                break
            points.append(pt)
        return points[::-1]

    def _in_log(self, points: Sequence[tuple[int, float]]) -> bool:
        """Judge in log-loss (scale-free) unless a loss <= 0 was ever seen or is here."""
        return self._log_scale and all(y > 0 for _, y in points)

    @staticmethod
    def _scaled(points: Sequence[tuple[int, float]], log: bool) -> list[tuple[float, float]]:
        return [(float(s), math.log(y) if log else y) for s, y in points]

    def _can_open(self, p: Proposal, step: int) -> bool:
        assert p.trial is not None and p.factor is not None
        if self.open is not None or not self.budget_left(p.trial, step):
            return False
        if not 1 / self.max_factor <= p.factor <= self.max_factor:
            return False
        baseline = self._baseline(step, p.trial.window)
        if len(baseline) < p.trial.window:
            return False
        return not p.trial.only_if_stalled or self.stalled(baseline)

    def progress(self, points: list[tuple[int, float]]) -> dict[str, float]:
        """How the (log-)loss over ``points`` moves: its fitted ``slope``, the slope's
        ``z`` (slope / standard error, serial correlation included; < 0 while falling) and
        ``r2``, the share of its variance the trend explains (near 1 when progress
        dominates the mini-batch noise, near 0 at a noise floor)."""
        pts = self._scaled(points, self._in_log(points))
        _, b, _, sxx, var = fit_line(pts)
        rho = serial_correlation([pts])
        se = math.sqrt(var * (1 + rho) / (1 - rho) / sxx) if sxx > 0 else 0.0
        mean = sum(y for _, y in pts) / len(pts)
        total = sum((y - mean) ** 2 for _, y in pts)
        return {"slope": b, "z": b / se if se > 0 else math.copysign(math.inf, b) if b else 0.0,
                "r2": 1 - var * (len(pts) - 2) / total if total > 0 else 0.0}

    def stalled(self, points: list[tuple[int, float]]) -> bool:
        """True iff the (log-)loss over ``points`` is not falling significantly: its fitted
        slope is above -2 standard errors (serial correlation included)."""
        return self.progress(points)["z"] > -2.0

    def _start(self, p: Proposal, step: int, signals: Mapping[str, float],
               events: list[Event]) -> Proposal:
        assert p.trial is not None
        baseline = self._baseline(step, p.trial.window)
        self.open = _Open(len(self.outcomes) + 1, p, step, baseline, [])
        reason = (f"trial {self.open.id} started: {p.knob} ×{p.factor:.3g} for "
                  f"{p.trial.burn_in} + {p.trial.window} steps ({p.reason})")
        before = {f"trial_baseline_{k}": v for k, v in self.progress(baseline).items()}
        events.append(Event(step, p.group, p.knob, None, p.factor, p.source, reason,
                            {**signals, **before}, "trial"))
        return Proposal(p.knob, factor=p.factor, group=p.group, reason=reason,
                        source=p.source, urgent=True)

    def _close(self, step: int, signals: Mapping[str, float],
               events: list[Event]) -> list[Proposal]:
        t = self.open
        assert t is not None
        spec = t.spec
        window = [pt for pt in t.points if pt[0] >= t.start + spec.burn_in]
        if len(window) < 3 or len(t.baseline) < 3:
            revert = self._finish(step, False, {}, "too few finite losses to judge", signals,
                                  events)
            return [revert]
        use_log = self._in_log(t.baseline + window)
        first = t.baseline[0][0]
        earlier = [pt for pt in self.history if pt[0] < first][-4 * spec.window:]
        ev = compare(self._scaled(t.baseline, use_log), self._scaled(window, use_log),
                     spec.horizon, self._scaled(earlier, use_log))
        kept, needed = verdict(ev, self.z, self.min_effect)
        why = (f"projected {'log-' if use_log else ''}loss {ev['effect']:+.4f} "
               f"(SE {ev['se']:.4f}, z {ev['z']:+.2f}, needs z < -{needed:.3g}, "
               f"rho {ev['rho']:.2f}, n_eff {ev['n_eff']:.0f}, horizon {spec.horizon})")
        level = {"level_baseline": _mean(self._scaled(t.baseline[-len(window):], use_log)),
                 "level_trial": _mean(self._scaled(window, use_log))}
        rise = level["level_trial"] - level["level_baseline"]  # raw losses: relative to it
        bar = HARM_RISE if use_log else HARM_RISE * abs(level["level_trial"])
        if not kept and ev["z"] > needed and rise > bar:
            self.restore_to = t.start
            why += (f"; harmful, and its mean {'log-' if use_log else ''}loss "
                    f"{level['level_trial']:.4g} is clearly above the "
                    f"{level['level_baseline']:.4g} before it: the weights of step "
                    f"{t.start} are restored")
        revert = self._finish(step, kept, {**ev, **level}, why, signals, events)
        return [] if kept else [revert]

    def _finish(self, step: int, kept: bool, evidence: Mapping[str, float], verdict: str,
                signals: Mapping[str, float], events: list[Event]) -> Proposal:
        t = self.open
        assert t is not None
        p = t.proposal
        factor = float(p.factor or 1.0)  # a trial proposal always has a factor
        self.open = None
        self.steps_spent += step - t.start
        # the next baseline starts where the lr it measures settled
        self.clean_from = t.start + t.spec.burn_in if kept else step + t.spec.burn_in
        self.outcomes.append(TrialOutcome(t.id, p.source, p.knob, factor, t.start, step,
                                          kept, float(evidence.get("effect", math.nan)),
                                          float(evidence.get("z", math.nan))))
        what = "kept" if kept else "reverted"
        reason = f"trial {t.id} {what}: {p.knob} ×{factor:.3g} — {verdict}"
        record = {**signals, **{f"trial_{k}": float(v) for k, v in evidence.items()}}
        events.append(Event(step, p.group, p.knob, factor, 1.0 if not kept else factor,
                            "trials", reason, record, "trial"))
        return Proposal(p.knob, factor=1.0 / factor, group=p.group, source="trials",
                        reason=f"trial {t.id} reverted", urgent=True)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        t = self.open
        return {
            "history": [list(pt) for pt in self.history],
            "outcomes": [[o.id, o.source, o.knob, o.factor, o.start, o.end, o.kept, o.effect, o.z]
                         for o in self.outcomes],
            "steps_spent": self.steps_spent,
            "log_scale": self._log_scale,
            "clean_from": self.clean_from,
            "stopped": self.stopped,
            "revert": [[p.knob, p.factor, p.group, p.reason] for p in self._revert],
            "open": None if t is None else {
                "id": t.id, "start": t.start, "knob": t.proposal.knob,
                "factor": t.proposal.factor, "group": t.proposal.group,
                "source": t.proposal.source, "reason": t.proposal.reason,
                "spec": [t.spec.window, t.spec.burn_in, t.spec.horizon,
                         t.spec.only_if_stalled],
                "baseline": [list(pt) for pt in t.baseline],
                "points": [list(pt) for pt in t.points],
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = deque(((int(s), float(y)) for s, y in state["history"]), maxlen=4096)
        self.outcomes = [TrialOutcome(int(i), str(s), str(k), float(f), int(a), int(b),
                                      bool(kept), float(e), float(z[0]) if z else math.nan)
                         for i, s, k, f, a, b, kept, e, *z in state["outcomes"]]
        self.steps_spent = int(state["steps_spent"])
        self._log_scale = bool(state["log_scale"])
        self.clean_from = int(state["clean_from"])
        self.stopped = bool(state.get("stopped", False))  # absent in states before restarts
        self._revert = [Proposal(k, factor=float(f), group=g, source="trials", reason=r,
                                 urgent=True) for k, f, g, r in state["revert"]]
        o = state["open"]
        self.open = None if o is None else _Open(
            int(o["id"]),
            Proposal(o["knob"], factor=float(o["factor"]), group=o["group"],
                     source=o["source"], reason=o["reason"],
                     trial=TrialSpec(int(o["spec"][0]), int(o["spec"][1]),
                                     int(o["spec"][2]), bool(o["spec"][3]))),
            int(o["start"]),
            [(int(s), float(y)) for s, y in o["baseline"]],
            [(int(s), float(y)) for s, y in o["points"]],
        )


__all__ = ["Trials", "compare", "fit_line"]
