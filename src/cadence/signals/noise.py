"""Gradient noise: the simple noise scale relative to the batch, ``tr(Σ_B) / |G|²``.

McCandlish et al. (2018): with per-example covariance Σ and true gradient G, the simple
noise scale ``B_simple = tr(Σ)/|G|²``; the mini-batch gradient of batch B has covariance
``Σ_B = Σ/B``, so ``tr(Σ_B)/|G|² = B_simple / B``. That dimensionless ratio is what this
signal reports: above 1 the step is dominated by noise (the batch is below the critical
batch), and a conservative learning rate pays; far below 1 the gradient is clean.

Estimators, first available wins:

1. **Micro-batches** (gradient accumulation with K ≥ 2 micro-batches, or ranks when the
   Regime reports them): from the norms ``|c_i|`` of each micro-batch's *contribution*
   (the c_i sum to the accumulated gradient g_B), ``|g_b|² = K² mean|c_i|²`` and
   ``E|g_b|² − E|g_B|² = (K−1) tr(Σ_B)``. Global only.
2. **Optimizer moments, reused, never duplicated.** Adam's ``exp_avg`` m and
   ``exp_avg_sq`` v are EMAs of g and g² with decays β1, β2. For a stationary gradient
   with per-coordinate mean G and variance σ², ``E m̂² = G² + σ²(1−β1)/(1+β1)`` and
   ``E v̂ = G² + σ²``, hence ``σ² ≈ (v̂ − m̂²)(1+β1)/(2β1)`` and
   ``G² ≈ m̂² − σ²(1−β1)/(1+β1)``. SGD's ``momentum_buffer`` (an EMA of g up to the
   factor (1−μ)/(1−dampening)) works the same way with a scalar EMA of |g|² kept here.
   Per group.

Optimizers with neither (plain SGD, Adagrad, Adam with β1 = 0) and no micro-batches
report 0 with ``grad_noise.valid = 0``. The numerator and denominator are averaged
separately (ratio of EMAs): single estimates are very noisy and the |G|² estimate can
be negative.

Cost (every ``every`` = 10 steps by default): a few fused reductions over the optimizer's
moment buffers (a read of ≈2× the parameters), no extra memory; the micro-batch estimator
is O(K) scalars.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from cadence.checks import check_beta, check_int
from cadence.protocol import SIGNALS, MeasureContext, Signal
from cadence.signals._stats import dense_grad, optimizer_state
from cadence.stats import Ema, finite

__all__ = ["GradNoise"]

_MAX_SCALE = 1e6


def _param_hparams(optimizer: Any) -> dict[int, dict[str, Any]]:
    """id(param) -> its torch param group (to read betas / momentum / dampening)."""
    out: dict[int, dict[str, Any]] = {}
    for group in getattr(optimizer, "param_groups", []):
        for p in group.get("params", []):
            out[id(p)] = group
    return out


@SIGNALS.register("grad_noise")
class GradNoise(Signal):
    """Noise-to-signal ratio ``tr(Σ_B)/|G|²`` of the gradient (= B_simple / batch).

    Keys: ``grad_noise`` (all groups) and ``grad_noise/{g}``: ratio of short EMAs;
    ``grad_noise.long``: the same with a long EMA (its baseline); ``grad_noise.ratio``:
    short / long, the "how much noisier than usual" number controllers use;
    ``grad_noise.valid``: 1 once an estimator is available; with ``batch_size`` given,
    ``grad_noise.b_simple`` = ratio × batch_size (the noise scale in examples).
    """

    name = "grad_noise"

    def __init__(
        self,
        beta: float = 0.9,
        beta_long: float = 0.99,
        every: int = 10,
        batch_size: int | None = None,
        name: str = "grad_noise",
    ) -> None:
        self.name = name
        self.every = check_int("every", every)
        self.beta = check_beta("beta", beta)
        self.beta_long = check_beta("beta_long", beta_long)
        if batch_size is not None:
            check_int("batch_size", batch_size)
        self.batch_size = batch_size
        self._short: dict[str, tuple[Ema, Ema]] = {}
        self._long: tuple[Ema, Ema] = (Ema(self.beta_long), Ema(self.beta_long))
        self._gsq: dict[str, Ema] = {}  # scalar EMA of |g|² per group for SGD momentum

    # -- measure ------------------------------------------------------------------------
    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        out: dict[str, float] = {}
        micro = [float(n) for n in ctx.micro_grad_norms]
        used_micro = False
        if len(micro) >= 2 and all(n == n for n in micro):
            k = len(micro)
            gb_sq = float(ctx.grad_norm) ** 2
            gsmall_sq = k * k * sum(n * n for n in micro) / k
            tr = max(gsmall_sq - gb_sq, 0.0) / (k - 1)
            out[f"{self.name}.tr"] = finite(tr)
            out[f"{self.name}.sq"] = finite(gb_sq - tr)
            used_micro = True
        hp = _param_hparams(ctx.optimizer)
        tot_tr = tot_sq = 0.0
        any_valid = used_micro
        for group, params in ctx.params_by_group.items():
            tr, sq, ok = self._group_moments(group, params, ctx.optimizer, hp)
            out[f"{self.name}.tr/{group}"] = tr
            out[f"{self.name}.sq/{group}"] = sq
            tot_tr, tot_sq = tot_tr + tr, tot_sq + sq
            any_valid = any_valid or ok
        if not used_micro:
            out[f"{self.name}.tr"] = tot_tr
            out[f"{self.name}.sq"] = tot_sq
        out[f"{self.name}.valid"] = 1.0 if any_valid else 0.0
        return out

    def _group_moments(
        self, group: str, params: list[Any], optimizer: Any, hp: dict[int, dict[str, Any]]
    ) -> tuple[float, float, bool]:
        """(tr Σ_B, |G|²) estimated from the optimizer's moments for one group."""
        adam_terms: list[torch.Tensor] = []
        sgd_m: list[torch.Tensor] = []
        sgd_g: list[torch.Tensor] = []
        mu = 0.0
        damp = 0.0
        beta1 = 0.0
        for p in params:
            st = optimizer_state(optimizer, p)
            pg = hp.get(id(p), {})
            if "exp_avg" in st and "exp_avg_sq" in st and "betas" in pg:
                b1, b2 = (float(b) for b in pg["betas"][:2])
                step = float(st.get("step", 0))
                m, v = st["exp_avg"], st["exp_avg_sq"]
                if b1 <= 0.0 or step < 1 or m.is_sparse or v.is_sparse or m.numel() == 0:
                    continue
                beta1 = b1
                m_hat = m.to(torch.float32) / (1.0 - b1**step)
                v_hat = v.to(torch.float32) / (1.0 - b2**step)
                m_sq = m_hat.square()
                var = (v_hat - m_sq).clamp_(min=0.0).sum() * ((1.0 + b1) / (2.0 * b1))
                adam_terms.append(torch.stack([var, m_sq.sum()]))
            elif st.get("momentum_buffer") is not None and float(pg.get("momentum", 0)) > 0:
                g = dense_grad(p)
                buf = st["momentum_buffer"]
                if g is None or buf.is_sparse:
                    continue
                mu = float(pg["momentum"])
                damp = float(pg.get("dampening", 0.0))
                sgd_m.append(buf.to(torch.float32).square().sum())
                sgd_g.append(g.to(torch.float32).square().sum())
        if adam_terms:
            var, m_sq = torch.stack(adam_terms).sum(0).tolist()
            g_sq = m_sq - var * (1.0 - beta1) / (1.0 + beta1)
            return finite(var), finite(g_sq), True
        if sgd_m and 0.0 < mu < 1.0 and damp < 1.0:
            scale = ((1.0 - mu) / (1.0 - damp)) ** 2
            m_sq = float(torch.stack(sgd_m).sum()) * scale
            ema = self._gsq.setdefault(group, Ema(mu))
            e_g_sq = ema.update(float(torch.stack(sgd_g).sum()))
            var = max(e_g_sq - m_sq, 0.0) * (1.0 + mu) / (2.0 * mu)
            g_sq = m_sq - var * (1.0 - mu) / (1.0 + mu)
            return finite(var), finite(g_sq), True
        return 0.0, 0.0, False

    # -- update -------------------------------------------------------------------------
    def _ratio(self, emas: tuple[Ema, Ema]) -> float:
        tr, sq = emas[0].value, emas[1].value
        if sq <= 0.0:
            return _MAX_SCALE if tr > 0 else 0.0
        return min(tr / sq, _MAX_SCALE)

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        out = dict(reduced)
        valid = reduced.get(f"{self.name}.valid", 0.0) > 0.0
        out[f"{self.name}.valid"] = 1.0 if valid else 0.0
        for key in [k for k in reduced if k.startswith(f"{self.name}.tr")]:
            suffix = key[len(f"{self.name}.tr"):]  # "" or "/group"
            tr = reduced[key]
            sq = reduced.get(f"{self.name}.sq{suffix}", 0.0)
            emas = self._short.setdefault(suffix, (Ema(self.beta), Ema(self.beta)))
            if valid and (tr > 0.0 or sq != 0.0):
                emas[0].update(tr)
                emas[1].update(sq)
            out[f"{self.name}{suffix}"] = self._ratio(emas)
            if suffix == "" and valid and (tr > 0.0 or sq != 0.0):
                self._long[0].update(tr)
                self._long[1].update(sq)
        long = self._ratio(self._long)
        short = out.get(self.name, 0.0)
        out[f"{self.name}.long"] = long
        out[f"{self.name}.ratio"] = short / long if long > 0 else 1.0
        if self.batch_size is not None:
            out[f"{self.name}.b_simple"] = short * self.batch_size
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "short": {k: (a.state_dict(), b.state_dict()) for k, (a, b) in self._short.items()},
            "long": (self._long[0].state_dict(), self._long[1].state_dict()),
            "gsq": {k: e.state_dict() for k, e in self._gsq.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._short = {}
        for k, (a, b) in state["short"].items():
            pair = (Ema(self.beta), Ema(self.beta))
            pair[0].load_state_dict(a)
            pair[1].load_state_dict(b)
            self._short[k] = pair
        self._long = (Ema(self.beta_long), Ema(self.beta_long))
        self._long[0].load_state_dict(state["long"][0])
        self._long[1].load_state_dict(state["long"][1])
        self._gsq = {}
        for k, s in state["gsq"].items():
            self._gsq[k] = Ema(0.9)
            self._gsq[k].load_state_dict(s)
