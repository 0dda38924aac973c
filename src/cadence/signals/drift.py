"""Drift detection: Page-Hinkley and CUSUM, and a signal that runs them on the loss.

Training loss falls by design, so the detectors never see the raw loss: they see the
standardised residual of a one-step trend forecast (research notes, B4/B5),
winsorised to ±``clip_z`` so that one spike cannot raise an alarm alone (spikes are the
guard's business; drift is a persistent shift of the residual's mean).

The detectors ``PageHinkley`` and ``Cusum`` live in ``cadence.stats`` (re-exported here):
plain scalar detectors usable on any stream (the drift controller also runs one on the
observed validation metric).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from cadence.checks import check_float, check_int
from cadence.protocol import SIGNALS, MeasureContext, Signal
from cadence.stats import Cusum, PageHinkley

__all__ = ["Cusum", "PageHinkley", "LossDrift", "quadratic_forecast"]


def quadratic_forecast(y: np.ndarray) -> tuple[float, float]:
    """One-step-ahead forecast of ``y`` by a least-squares quadratic in time, and its
    prediction standard error (residual σ × √(1 + leverage))."""
    n = len(y)
    design, pinv, x0, leverage = _quadratic_fit(n)
    coef = pinv @ y
    resid = y - design @ coef
    sigma = math.sqrt(float(resid @ resid) / max(n - 3, 1))
    return float(x0 @ coef), sigma * math.sqrt(1.0 + leverage)


@functools.lru_cache(maxsize=8)
def _quadratic_fit(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The fixed parts of the fit over ``n`` points: design matrix, its pseudo-inverse,
    the forecast point's row and its leverage (computed once per window length)."""
    t = (np.arange(n, dtype=np.float64) - n / 2) / n
    design = np.vander(t, 3)
    x0 = np.vander(np.array([n / 2 / n]), 3)[0]
    leverage = float(x0 @ np.linalg.solve(design.T @ design, x0))
    return design, np.linalg.pinv(design), x0, leverage


@SIGNALS.register("drift")
class LossDrift(Signal):
    """Page-Hinkley and CUSUM on standardised residuals of the training-loss trend.

    Each loss is compared with a one-step forecast from a least-squares quadratic over the
    previous ``window`` losses (a quadratic absorbs the curvature of a decelerating loss
    curve, which makes linear or EMA forecasts raise false alarms early in training),
    standardised by the forecast's prediction error and winsorised to ±``clip_z``.
    After an alarm the window is cleared: the detectors re-arm once ``window`` losses of
    the new regime have been seen, so one shift raises one alarm.

    Keys: ``drift.z``, ``drift.ph`` and ``drift.cusum`` (detector statistics, σ units),
    ``drift`` (+1 upward shift detected at this step, −1 downward, 0 none), and, measured
    before the guard's verdict, ``drift.alarm`` (1 while an upward alarm of the previous
    update awaits the guard's restored-weights test, which tells a data shift from a rise
    the weights or the lr caused; see ``cadence.regime.guard``).

    Cost: a 3-column least-squares fit over ``window`` floats per step (tens of µs).
    Defaults (CUSUM k = 0.5, h = 7; Page-Hinkley δ = 0.5, λ = 10) give an in-control run
    length of about two thousand steps on white residuals and a ~15-step delay for a 1σ
    shift.
    """

    name = "drift"

    def __init__(
        self,
        window: int = 50,
        clip_z: float = 3.0,
        cusum: dict[str, float] | None = None,
        page_hinkley: dict[str, float] | None = None,
        every: int = 1,
        name: str = "drift",
    ) -> None:
        self.name = name
        self.every = check_int("every", every)
        self.window = check_int("window", window, 10)
        self.clip_z = check_float("clip_z", clip_z, 0.0, low_open=True)
        cusum_args: dict[str, Any] = {"h": 7.0, "min_instances": 0, **(cusum or {})}
        self.cusum = Cusum(**cusum_args)
        ph_args: dict[str, Any] = {"threshold": 10.0, "min_instances": 10, **(page_hinkley or {})}
        self.ph = PageHinkley(**ph_args)
        self._buf: deque[float] = deque(maxlen=window)
        self._alarmed = False  # the last update raised an upward alarm

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        return {f"{self.name}.loss": float(ctx.loss), f"{self.name}.alarm": float(self._alarmed)}

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        loss = reduced.get(f"{self.name}.loss", math.nan)
        z = 0.0
        alarm = c = p = 0
        if math.isfinite(loss) and len(self._buf) >= self.window:
            forecast, se = quadratic_forecast(np.asarray(self._buf))
            se = max(se, 1e-12 * max(abs(forecast), 1.0))
            z = max(-self.clip_z, min(self.clip_z, (loss - forecast) / se))
            c, p = self.cusum.update(z), self.ph.update(z)
            alarm = c or p
            loss = forecast + z * se  # winsorised, so one spike cannot bend the fit
        # at an alarm, report the statistic that crossed its threshold, not the re-armed 0
        out = {
            f"{self.name}.z": z,
            f"{self.name}.ph": self.ph.fired_at if p else self.ph.statistic,
            f"{self.name}.cusum": self.cusum.fired_at if c else self.cusum.statistic,
            self.name: float(alarm),
        }
        self._alarmed = alarm > 0
        if math.isfinite(loss):
            if alarm:
                self._buf.clear()
                self.cusum.reset()
                self.ph.reset()
            else:
                self._buf.append(loss)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"buf": list(self._buf), "cusum": self.cusum.state_dict(),
                "ph": self.ph.state_dict(), "alarmed": self._alarmed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._buf = deque(state["buf"], maxlen=self.window)
        self.cusum.load_state_dict(state["cusum"])
        self.ph.load_state_dict(state["ph"])
        self._alarmed = bool(state.get("alarmed", False))
