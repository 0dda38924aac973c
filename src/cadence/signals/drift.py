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

__all__ = ["Cusum", "PageHinkley", "LossDrift", "RollingQuadratic", "quadratic_forecast"]


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


class RollingQuadratic:
    """:func:`quadratic_forecast` over the last ``n`` values, kept in O(1) per value.

    Holds the running sums Σuᵏ·(y − c) (k = 0, 1, 2) and Σ(y − c)² over the fit's centred,
    scaled times u (the newest value at the last one; each new value shifts the others one
    step back), so a forecast is a 3×3 product instead of a least-squares fit. ``c`` (the
    newest value at the last rebuild) keeps the residual sum from cancelling on a loss
    that is nearly constant at a large level; the sums are rebuilt exactly from the values
    every ``n`` pushes, so rounding cannot accumulate.
    """

    def __init__(self, n: int) -> None:
        n = check_int("n", n, 4)  # a quadratic and a residual need at least 4 points
        design, _, x0, leverage = _quadratic_fit(n)
        self.n, self.h = n, 1.0 / n
        self._u_old, self._u_new = -1.0 / n - 0.5, (n - 1) / n - 0.5  # leaving / arriving
        self._ginv = np.linalg.inv(design.T @ design).tolist()
        self._x0 = x0.tolist()
        self._se_factor = math.sqrt(1.0 + leverage)
        self.values: deque[float] = deque(maxlen=n)
        self.clear()

    def clear(self) -> None:
        self.values.clear()
        self._s, self._q, self._c, self._pushes = [0.0, 0.0, 0.0], 0.0, 0.0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "sums": [*self._s, self._q, self._c, self._pushes]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the values and the sums exactly (a resumed run forecasts bit for bit as
        the uninterrupted one); ``sums`` absent (an older state): rebuilt from the values."""
        self.clear()
        self.values.extend(float(y) for y in state["values"])
        if state.get("sums") is None:
            if self.values:
                self._rebuild()
            return
        *s, q, c, pushes = state["sums"]
        self._s = [float(x) for x in s]
        self._q, self._c, self._pushes = float(q), float(c), int(pushes)

    def push(self, y: float) -> None:
        vals = self.values
        self._pushes += 1
        if self._pushes >= self.n or not vals:
            vals.append(y)
            self._rebuild()
            return
        s2, s1, s0 = self._s
        h, c = self.h, self._c
        s2, s1 = s2 - 2.0 * h * s1 + h * h * s0, s1 - h * s0  # every value one step older
        if len(vals) == self.n:  # the oldest leaves
            d, u = vals[0] - c, self._u_old
            s0, s1, s2, self._q = s0 - d, s1 - u * d, s2 - u * u * d, self._q - d * d
        vals.append(y)
        d, u = y - c, self._u_new
        self._s = [s2 + u * u * d, s1 + u * d, s0 + d]
        self._q += d * d

    def _rebuild(self) -> None:
        vals, n = self.values, self.n
        self._c = c = vals[-1]
        u0 = (n - len(vals)) / n - 0.5
        s2 = s1 = s0 = q = 0.0
        for i, y in enumerate(vals):
            u, d = u0 + i / n, y - c
            s2, s1, s0, q = s2 + u * u * d, s1 + u * d, s0 + d, q + d * d
        self._s, self._q, self._pushes = [s2, s1, s0], q, 0

    def forecast(self) -> tuple[float, float]:
        """One-step-ahead forecast and its standard error, as :func:`quadratic_forecast`
        of :attr:`values` (which must hold ``n`` values)."""
        if len(self.values) < self.n:
            raise ValueError(f"forecast needs {self.n} values, has {len(self.values)}")
        s = self._s
        coef = [g[0] * s[0] + g[1] * s[1] + g[2] * s[2] for g in self._ginv]
        rss = max(self._q - (coef[0] * s[0] + coef[1] * s[1] + coef[2] * s[2]), 0.0)
        x0 = self._x0
        mean = x0[0] * coef[0] + x0[1] * coef[1] + x0[2] * coef[2] + self._c
        return mean, math.sqrt(rss / max(self.n - 3, 1)) * self._se_factor


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

    Cost: O(1) per step (the fit's running sums, :class:`RollingQuadratic`).
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
        self._fit = RollingQuadratic(self.window)  # the last `window` losses
        self._alarmed = False  # the last update raised an upward alarm

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        return {f"{self.name}.loss": float(ctx.loss), f"{self.name}.alarm": float(self._alarmed)}

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        loss = reduced.get(f"{self.name}.loss", math.nan)
        z = 0.0
        alarm = c = p = 0
        if math.isfinite(loss) and len(self._fit.values) >= self.window:
            forecast, se = self._fit.forecast()
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
                self._fit.clear()
                self.cusum.reset()
                self.ph.reset()
            else:
                self._fit.push(loss)
        return out

    def state_dict(self) -> dict[str, Any]:
        fit = self._fit.state_dict()
        return {"buf": fit["values"], "fit_sums": fit["sums"], "cusum": self.cusum.state_dict(),
                "ph": self.ph.state_dict(), "alarmed": self._alarmed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._fit.load_state_dict({"values": state["buf"], "sums": state.get("fit_sums")})
        self.cusum.load_state_dict(state["cusum"])
        self.ph.load_state_dict(state["ph"])
        self._alarmed = bool(state.get("alarmed", False))
