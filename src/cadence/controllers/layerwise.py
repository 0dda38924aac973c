"""Per-layer sensitivity: group lr multipliers that even out how fast groups learn.

Two statistics, chosen by ``mode``:

* ``"trust"`` (default, any optimizer): the update-to-weight ratio ``|Δθ|/|θ|`` of each group
  relative to the median group (``update_ratio.rel/{g}``). A group that moves 4× faster than
  the median, relative to its own size, gets ``4^-alpha`` — the softened trust ratio of
  LARS/LAMB.
* ``"grad"`` (SGD-like optimizers): the per-coordinate gradient RMS of each group relative to
  the median (``grad_norms.rms/{g}``); a group with 4× larger gradients gets ``4^-alpha``.
  Adam already normalises gradient scale per coordinate, so prefer ``"trust"`` there.

Targets are smoothed (EMA in log space), the spread between groups is bounded (largest /
smallest multiplier ≤ ``max_spread``), and each group follows its target by at most
``max_step`` per decision. **Fallback:** the validation metric at the moment the multipliers
first move is remembered (or, when none was observed yet, the first one after); if later
observations are worse by more than ``tol`` for
``patience`` observations in a row, every group returns to the uniform rate and the
controller stays off.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

from cadence.checks import check_beta, check_float, check_int
from cadence.controllers._follow import Follower, fmt
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals
from cadence.stats import median

__all__ = ["LayerwiseLR"]

_MODES = {"trust": ("update_ratio", "update_ratio.rel/"), "grad": ("grad_norms", "grad_norms.rms/")}


@CONTROLLERS.register("layerwise")
class LayerwiseLR(Controller):
    """Per-group lr multipliers from group statistics, with bounded spread and a fallback.

    Parameters: ``mode`` ("trust" or "grad"), ``alpha`` (strength, 0.5), ``max_spread`` (4.0),
    ``max_step`` (×1.02 per decision), ``beta`` (EMA of the log statistic, 0.9),
    ``metric``/``metric_mode``/``tol``/``patience`` for the fallback, ``start_step`` (first
    step it may act, besides waiting out the warmup).
    """

    name = "layerwise"

    def __init__(
        self,
        mode: str = "trust",
        alpha: float = 0.5,
        max_spread: float = 4.0,
        max_step: float = 1.02,
        beta: float = 0.9,
        metric: str = "val_loss",
        metric_mode: str = "min",
        tol: float = 0.02,
        patience: int = 2,
        start_step: int = 0,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        if metric_mode not in ("min", "max"):
            raise ValueError(f"metric_mode must be 'min' or 'max', got {metric_mode!r}")
        self.mode = mode
        self.requires = (_MODES[mode][0],)
        self._prefix = _MODES[mode][1]
        self.alpha = check_float("alpha", alpha, 0.0, 1.0, low_open=True)
        self.max_spread = check_float("max_spread", max_spread, 1.0, low_open=True)
        half = math.sqrt(self.max_spread)
        self.follower = Follower((1.0 / half, half), max_step=max_step, deadband=0.03)
        self.beta = check_beta("beta", beta)
        self.metric, self.metric_mode = metric, metric_mode
        self.tol = check_float("tol", tol, 0.0)
        self.patience = check_int("patience", patience)
        self.start_step = check_int("start_step", start_step, 0)
        self._log_stat: dict[str, float] = {}
        self._ref: float | None = None
        self._enabled = False
        self._worse = 0
        self._seen_metrics_step: int | None = None
        self.fallen_back = False

    # -- fallback -----------------------------------------------------------------------
    def _check_fallback(self, context: Context) -> str | None:
        value = context.metrics.get(self.metric)
        fresh = context.metrics_step is not None and context.metrics_step != self._seen_metrics_step
        if value is None or not fresh or not math.isfinite(value):
            return None
        self._seen_metrics_step = context.metrics_step
        if not self._enabled:
            return None
        if self._ref is None:  # no observation before the first move: the first one after
            self._ref = value  # it is the reference (it saw per-layer rates only briefly)
            return None
        ref = self._ref
        worse = value > ref * (1 + self.tol) if self.metric_mode == "min" else (
            value < ref * (1 - self.tol))
        self._worse = self._worse + 1 if worse else 0
        if self._worse >= self.patience:
            self.fallen_back = True
            change = abs(value / ref - 1) * 100 if ref else math.inf
            return (f"{self.metric} {fmt(value)} is {change:.1f}% worse than {fmt(ref)} when "
                    f"per-layer rates started, {self._worse} observations running → back to "
                    "uniform rates")
        return None

    # -- propose ------------------------------------------------------------------------
    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        fallback_reason = self._check_fallback(context)
        if self.fallen_back:
            return self._return_to_uniform(context, fallback_reason)
        if context.in_warmup or context.step < self.start_step:
            return []
        if self.mode == "trust" and signals.get("update_ratio.valid", 1.0) <= 0.0:
            return []
        stats = {}
        for g in context.groups:
            value = signals.get(self._prefix + g.name)
            if g.num_params > 0 and value is not None and value > 0 and math.isfinite(value):
                stats[g.name] = float(value)
        if len(stats) < 2:
            return []
        if self.mode == "grad":  # make it relative to the median group
            med = median(stats.values())
            stats = {k: v / med for k, v in stats.items()}
        for k, v in stats.items():
            prev = self._log_stat.get(k)
            x = math.log(v)
            self._log_stat[k] = x if prev is None else self.beta * prev + (1 - self.beta) * x
        logs = {k: -self.alpha * self._log_stat[k] for k in stats}
        center = statistics.fmean(logs.values())
        half = 0.5 * math.log(self.max_spread)
        proposals = []
        for name, lt in logs.items():
            target = math.exp(min(max(lt - center, -half), half))
            factor = self.follower.move(name, target)
            if factor is None:
                continue
            if not self._enabled:
                self._enabled = True
                self._ref = context.metrics.get(self.metric)
            what = "update/weight ratio" if self.mode == "trust" else "gradient RMS"
            reason = (f"{what} of {name} is {math.exp(self._log_stat[name]):.2f}× the median "
                      f"group → lr ×{factor:.3f} (layer multiplier now "
                      f"{self.follower.get(name):.2f}, target {target:.2f})")
            proposals.append(Proposal("lr", factor=factor, group=name, reason=reason,
                                      source=self.name))
        return proposals

    def _return_to_uniform(self, context: Context, why: str | None) -> list[Proposal]:
        proposals = []
        for g in context.groups:
            factor = self.follower.move(g.name, 1.0)
            if factor is not None:
                reason = why or (f"returning {g.name} to the uniform rate after fallback "
                                 f"(multiplier now {self.follower.get(g.name):.2f})")
                proposals.append(Proposal("lr", factor=factor, group=g.name, reason=reason,
                                          source=self.name))
        return proposals

    def state_dict(self) -> dict[str, Any]:
        return {
            "follower": self.follower.state_dict(), "log_stat": dict(self._log_stat),
            "ref": self._ref, "enabled": self._enabled, "worse": self._worse,
            "seen_metrics_step": self._seen_metrics_step, "fallen_back": self.fallen_back,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.follower.load_state_dict(state["follower"])
        self._log_stat = dict(state["log_stat"])
        self._ref = state["ref"]
        self._enabled = bool(state["enabled"])
        self._worse = int(state["worse"])
        self._seen_metrics_step = state["seen_metrics_step"]
        self.fallen_back = bool(state["fallen_back"])
