"""Loss trend: windowed least-squares slope, plateau flag with hysteresis, spike statistics.

The slope is the ordinary least-squares fit of the last ``window`` losses against the
step; its t-statistic says whether the trend is distinguishable from noise (mini-batch
losses are autocorrelated, so treat |t| < 3 as "no evidence"). The *projected relative
gain* ``−slope · window / |mean|`` is the fraction by which the loss would fall over
another window at the current rate. The plateau test has hysteresis: a step counts as
*stalled* when that gain is below ``plateau_on`` or the slope is not significant
(t > −t_min/1.5); ``patience`` stalled steps in a row enter the plateau, and only a
clearly *improving* step (gain above ``plateau_off`` and t < −t_min) leaves it, so the
flag does not chatter on noise.

Spikes: the z-score of the loss against an EMA mean/std of the *winsorised* loss
(capped at mean + 3σ so that a spike does not inflate its own baseline); a step with
z > ``spike_z`` counts as a spike and ``loss_trend.spike_rate`` is their EMA frequency.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from cadence.checks import check_int
from cadence.protocol import SIGNALS, MeasureContext, Signal
from cadence.stats import Ema, EmaMoments, finite

__all__ = ["LossTrend", "ols_slope"]


def ols_slope(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of ``y`` on ``t`` and its standard error (0, inf if undefined)."""
    n = len(t)
    if n < 3:
        return 0.0, math.inf
    tc = t - t.mean()
    sxx = float(tc @ tc)
    if sxx <= 0:
        return 0.0, math.inf
    slope = float(tc @ (y - y.mean())) / sxx
    resid = y - y.mean() - slope * tc
    sigma2 = float(resid @ resid) / (n - 2)
    return slope, math.sqrt(max(sigma2, 0.0) / sxx)


@SIGNALS.register("loss_trend")
class LossTrend(Signal):
    """Slope, plateau and spike statistics of the training loss (every step, O(window)).

    Keys: ``loss_trend.slope`` (loss per step), ``loss_trend.tstat``, ``loss_trend.mean``
    (window mean), ``loss_trend.rel_gain`` (projected relative gain over one window),
    ``loss_trend.plateau`` (0/1, with hysteresis), ``loss_trend.spike_z``,
    ``loss_trend.spike_rate``. Non-finite losses are ignored (the guard handles them).

    Cost: a regression over ``window`` floats per step (microseconds), no tensor work.
    """

    name = "loss_trend"

    def __init__(
        self,
        window: int = 100,
        plateau_on: float = 1e-3,
        plateau_off: float = 3e-3,
        patience: int = 20,
        spike_z: float = 6.0,
        t_min: float = 3.0,
        beta: float = 0.97,
        every: int = 1,
        name: str = "loss_trend",
    ) -> None:
        self.name = name
        self.every = check_int("every", every)
        self.window = check_int("window", window, 3)  # a regression needs three points
        if not 0 <= plateau_on < plateau_off:
            raise ValueError(
                f"need 0 <= plateau_on < plateau_off, got {plateau_on!r}, {plateau_off!r}"
            )
        self.plateau_on, self.plateau_off = float(plateau_on), float(plateau_off)
        self.patience = check_int("patience", patience)
        self.spike_z = float(spike_z)
        self.t_min = float(t_min)
        self._t: deque[float] = deque(maxlen=window)
        self._y: deque[float] = deque(maxlen=window)
        self._count = 0
        self._below = 0
        self._plateau = False
        self._moments = EmaMoments(beta)
        self._spikes = Ema(0.99)
        self._spike_z = 0.0

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        return {f"{self.name}.loss": float(ctx.loss), f"{self.name}.step": float(ctx.step)}

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        loss = reduced.get(f"{self.name}.loss", math.nan)
        step = reduced.get(f"{self.name}.step", float(self._count))
        if math.isfinite(loss):
            self._count += 1
            z = self._moments.zscore(loss)
            spike = self._moments.count >= 10 and z > self.spike_z
            self._spikes.update(1.0 if spike else 0.0)
            cap = self._moments.mean + 3.0 * self._moments.std
            self._moments.update(min(loss, cap) if self._moments.count >= 10 else loss)
            self._t.append(step)
            self._y.append(min(loss, cap) if spike else loss)
            self._spike_z = z
        t = np.asarray(self._t, dtype=np.float64)
        y = np.asarray(self._y, dtype=np.float64)
        slope, se = ols_slope(t, y)
        mean = float(y.mean()) if len(y) else 0.0
        span = float(self.window)
        rel_gain = -slope * span / abs(mean) if mean != 0 and len(y) >= 3 else math.inf
        tstat = slope / se if se > 0 else 0.0
        full = len(y) >= self.window
        # Stalled: too little projected gain, or a slope indistinguishable from noise.
        stalled = rel_gain < self.plateau_on or tstat > -self.t_min / 1.5
        improving = rel_gain > self.plateau_off and tstat < -self.t_min
        if full and stalled:
            self._below += 1
        elif improving:
            self._below = 0
        if not self._plateau and self._below >= self.patience:
            self._plateau = True
        elif self._plateau and improving:
            self._plateau = False
        return {
            f"{self.name}.slope": finite(slope),
            f"{self.name}.tstat": finite(tstat),
            f"{self.name}.mean": finite(mean),
            f"{self.name}.rel_gain": finite(rel_gain, default=1.0),
            f"{self.name}.plateau": 1.0 if self._plateau else 0.0,
            f"{self.name}.spike_z": finite(self._spike_z),
            f"{self.name}.spike_rate": self._spikes.value,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "t": list(self._t), "y": list(self._y), "count": self._count,
            "below": self._below, "plateau": self._plateau,
            "moments": self._moments.state_dict(), "spikes": self._spikes.state_dict(),
            "spike_z": self._spike_z,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._t = deque(state["t"], maxlen=self.window)
        self._y = deque(state["y"], maxlen=self.window)
        self._count = int(state["count"])
        self._below = int(state["below"])
        self._plateau = bool(state["plateau"])
        self._moments.load_state_dict(state["moments"])
        self._spikes.load_state_dict(state["spikes"])
        self._spike_z = float(state["spike_z"])
