"""Scalar statistics shared by signals, controllers and optimizers: one implementation each.

* running statistics: :class:`Ema` (bias-corrected EMA), :class:`EmaMoments` (exponentially
  weighted mean and variance), :func:`finite`;
* robust location and scale: :func:`median`, :func:`mad` (``MAD_TO_SIGMA`` turns a MAD into
  a Gaussian σ);
* random-walk references of a cumulated path of unit steps: :func:`reference_mu` and
  :func:`random_walk_std` (CLARA), :func:`alera_reference` and :func:`alera_zscore`
  (SALeRA, 2017);
* change detectors: :class:`PageHinkley` and :class:`Cusum` (two-sided, on a standardised
  stream) and :class:`SaleraPageHinkley` (one-sided, on a raw loss stream, SALeRA's
  safeguard).

Every stateful object has ``state_dict()`` / ``load_state_dict()`` holding plain Python
numbers. A leaf module: it imports nothing of cadence's (argument validators for the
rest of cadence are in ``cadence.checks``; the few checks here are inline).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "CLARA_DAMPING", "MAD_TO_SIGMA", "Cusum", "Ema", "EmaMoments", "PageHinkley",
    "SaleraPageHinkley", "alera_reference", "alera_zscore", "finite", "mad", "median",
    "random_walk_std", "reference_mu",
]


def _require(ok: bool, name: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _beta(x: Any) -> float:
    _require(_number(x) and 0.0 <= x < 1.0, "beta", "a number in [0, 1)", x)
    return float(x)


def finite(x: float, default: float = 0.0) -> float:
    """``x`` if it is a finite float, else ``default`` (keeps NaN out of packed signals)."""
    x = float(x)
    return x if math.isfinite(x) else default


# -- running statistics -----------------------------------------------------------------

class Ema:
    """Bias-corrected exponential moving average of a scalar (Adam-style correction).

    ``value`` is 0.0 before the first update.
    """

    def __init__(self, beta: float) -> None:
        self.beta = _beta(beta)
        self.raw = 0.0
        self.count = 0

    def update(self, x: float) -> float:
        self.count += 1
        self.raw = self.beta * self.raw + (1.0 - self.beta) * float(x)
        return self.value

    @property
    def value(self) -> float:
        if self.count == 0:
            return 0.0
        return self.raw / (1.0 - self.beta**self.count)

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "raw": self.raw, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state.get("beta", self.beta))
        self.raw = float(state["raw"])
        self.count = int(state["count"])


class EmaMoments:
    """Exponentially weighted mean and variance of a scalar (West's incremental form).

    Starts from the first sample, so there is no start-up bias in the mean.
    """

    def __init__(self, beta: float) -> None:
        self.beta = _beta(beta)
        self.mean = 0.0
        self.var = 0.0
        self.count = 0

    def update(self, x: float) -> None:
        x = float(x)
        self.count += 1
        if self.count == 1:
            self.mean, self.var = x, 0.0
            return
        alpha = 1.0 - self.beta
        diff = x - self.mean
        incr = alpha * diff
        self.mean += incr
        self.var = (1.0 - alpha) * (self.var + diff * incr)

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def zscore(self, x: float, floor: float = 1e-12) -> float:
        """Standardised distance of ``x`` from the running mean (0 before two samples)."""
        if self.count < 2:
            return 0.0
        return (float(x) - self.mean) / max(self.std, floor, 1e-3 * abs(self.mean))

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = float(state["mean"])
        self.var = float(state["var"])
        self.count = int(state["count"])


# -- robust location and scale ----------------------------------------------------------

#: ``1.4826 · MAD`` estimates σ for Gaussian data.
MAD_TO_SIGMA = 1.4826


def median(values: Iterable[float]) -> float:
    """Median of ``values`` (the mean of the two middle ones for an even count)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return xs[mid] if n % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def mad(values: Iterable[float], center: float | None = None) -> float:
    """Median absolute deviation of ``values`` from ``center`` (default: their median)."""
    xs = list(values)
    c = median(xs) if center is None else center
    return median(abs(x - c) for x in xs)


# -- random-walk references -------------------------------------------------------------

#: CLARA's gain ``d`` of ``lr ← lr · exp(d (rho − 1))``: the value of every run in the paper.
CLARA_DAMPING = 1e-3


def reference_mu(c: float, beta: float = 0.0) -> float:
    """Expected ``|p|^2`` of one tensor's path when the step directions come from pure noise.

    The path cumulates unit steps, ``p ← (1 − c) p + c u``. Steps that average i.i.d.
    gradients with coefficient ``beta`` (heavy-ball momentum or Adam's beta1) have lag-``l``
    cosine ``beta**l``; summing the discounted correlations gives
    ``c/(2-c) * (1 + (1-c) beta) / (1 - (1-c) beta)``. ``beta=0`` is the SGD value
    ``c/(2-c)``. For Adam this assumes a slowly varying second moment (beta2 near 1).
    """
    _require(_number(c) and 0.0 < c <= 1.0, "c", "a number in (0, 1]", c)
    _beta(beta)
    a = 1.0 - c
    return c / (2.0 - c) * (1.0 + a * beta) / (1.0 - a * beta)


def random_walk_std(c: float, n: int) -> float:
    """Standard deviation of ``|p|^2`` for i.i.d. random unit steps in ``n`` dimensions.

    ``2 a mu / sqrt((1 + a^2) n)`` with ``a = 1 - c`` (the reference code's sigma is smaller
    by a factor sqrt(2)). Useful to size the damping: ``d`` of a few sigma keeps the
    log-lr random walk on pure noise small.
    """
    _require(_number(c) and 0.0 < c <= 1.0, "c", "a number in (0, 1]", c)
    _require(_number(n) and n >= 1, "n", "a positive number of scalars", n)
    a = 1.0 - c
    return 2.0 * a * reference_mu(c) / math.sqrt((1.0 + a * a) * n)


def alera_reference(alpha: float, t: int) -> float:
    """Expected ``|p|²`` after ``t`` i.i.d. random unit steps of the path with rate ``alpha``
    (the transient-corrected random-walk mean ``α/(2 − α)·(1 − (1 − α)^{2t})``)."""
    return alpha / (2.0 - alpha) * (1.0 - (1.0 - alpha) ** (2 * t))


def alera_zscore(sq: float, alpha: float, t: int, n: int) -> float:
    """SALeRA's z-score of a path's ``|p|² = sq`` after ``t`` steps over ``n`` scalars:
    ``(sq − μ_t) / σ`` with ``μ_t = alera_reference(alpha, t)`` and ``σ = α/√n``."""
    return (sq - alera_reference(alpha, t)) / (alpha / math.sqrt(n))


# -- change detectors -------------------------------------------------------------------

class Cusum:
    """Two-sided CUSUM on a standardised stream: ``S⁺ = max(0, S⁺ + x − k)`` (and mirror).

    ``update`` returns +1 (upward shift), −1 (downward) or 0; the statistic resets after an
    alarm. ``k`` is half the shift to detect in σ units; ``h`` the alarm threshold.
    """

    def __init__(self, k: float = 0.5, h: float = 5.0, min_instances: int = 30) -> None:
        _require(_number(k) and k > 0, "k", "a finite number > 0", k)
        _require(_number(h) and h > 0, "h", "a finite number > 0", h)
        self.k, self.h = float(k), float(h)
        self.min_instances = int(min_instances)
        self.reset()
        self.n = 0
        self.fired_at = 0.0  # the statistic that raised the latest alarm

    def reset(self) -> None:
        self.pos = 0.0
        self.neg = 0.0

    @property
    def statistic(self) -> float:
        return max(self.pos, self.neg)

    def update(self, x: float) -> int:
        self.n += 1
        self.pos = max(0.0, self.pos + x - self.k)
        self.neg = max(0.0, self.neg - x - self.k)
        if self.n < self.min_instances:
            return 0
        direction = 1 if self.pos > self.h else (-1 if self.neg > self.h else 0)
        if direction:
            self.fired_at = self.statistic
            self.reset()
        return direction

    def state_dict(self) -> dict[str, Any]:
        return {"pos": self.pos, "neg": self.neg, "n": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pos, self.neg, self.n = float(state["pos"]), float(state["neg"]), int(state["n"])


class PageHinkley:
    """Two-sided Page-Hinkley test (river/MOA form, with fading factor ``alpha``).

    ``m⁺ = α m⁺ + (x − x̄ − δ)``, alarm when ``m⁺ − min m⁺ > λ`` (and mirrored for
    decreases). Defaults suit a standardised stream (δ = 0.5σ, λ = 8σ). ``update`` returns
    +1, −1 or 0 and restarts the test after an alarm.
    """

    def __init__(
        self,
        delta: float = 0.5,
        threshold: float = 8.0,
        alpha: float = 0.9999,
        min_instances: int = 30,
    ) -> None:
        _require(_number(delta) and delta >= 0, "delta", "a finite number >= 0", delta)
        _require(_number(threshold) and threshold > 0, "threshold", "a finite number > 0",
                 threshold)
        _require(_number(alpha) and 0 < alpha <= 1, "alpha", "a number in (0, 1]", alpha)
        self.delta, self.threshold, self.alpha = float(delta), float(threshold), float(alpha)
        self.min_instances = int(min_instances)
        self.reset()
        self.fired_at = 0.0  # the statistic that raised the latest alarm

    def reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.up = self.up_min = 0.0
        self.down = self.down_max = 0.0

    @property
    def statistic(self) -> float:
        return max(self.up - self.up_min, self.down_max - self.down)

    def update(self, x: float) -> int:
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.up = self.alpha * self.up + (x - self.mean - self.delta)
        self.down = self.alpha * self.down + (x - self.mean + self.delta)
        self.up_min = min(self.up_min, self.up)
        self.down_max = max(self.down_max, self.down)
        if self.n < self.min_instances:
            return 0
        if self.statistic > self.threshold:
            self.fired_at = self.statistic
            direction = 1 if self.up - self.up_min > self.threshold else -1
            self.reset()
            return direction
        return 0

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("n", "mean", "up", "up_min", "down", "down_max")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, type(getattr(self, k))(v))


class SaleraPageHinkley:
    """SALeRA's Page-Hinkley test for an upward jump of a raw, noisy loss stream.

    The loss is first relaxed (running mean for the first ``1/rate`` values, then an EMA of
    rate ``rate``). With ``m`` the running mean of the relaxed loss, ``U += relaxed − m``
    and ``M = min(M, U)``; an alarm fires when ``U − M > threshold``. A non-finite loss
    alarms at once. ``threshold=None`` uses 0.1 × |first loss|, as the authors' code.
    """

    def __init__(self, threshold: float | None = None, rate: float = 0.01) -> None:
        _require(threshold is None or (_number(threshold) and threshold > 0), "threshold",
                 "None or a finite number > 0", threshold)
        _require(_number(rate) and 0.0 < rate <= 1.0, "rate", "a number in (0, 1]", rate)
        self.threshold = threshold
        self.rate = rate
        self.reset()

    def reset(self) -> None:
        """Forget the stream (after an alarm); the threshold is kept."""
        self.count = 0
        self.relaxed = 0.0
        self.mean = 0.0
        self.cusum = 0.0
        self.minimum = 0.0

    def update(self, loss: float) -> bool:
        """Fold in one loss value; True when a jump is detected."""
        loss = float(loss)
        if not math.isfinite(loss):
            return True
        if self.threshold is None:
            self.threshold = 0.1 * abs(loss) if loss != 0 else 1e-3
        self.count += 1
        weight = max(1.0 / self.count, self.rate)
        self.relaxed += weight * (loss - self.relaxed)
        self.mean += (self.relaxed - self.mean) / self.count
        self.cusum += self.relaxed - self.mean
        self.minimum = min(self.minimum, self.cusum)
        return self.cusum - self.minimum > self.threshold

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in
                ("threshold", "rate", "count", "relaxed", "mean", "cusum", "minimum")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
