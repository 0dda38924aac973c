"""Curvature proxies: a cheap secant estimate along the path, and opt-in Hessian λ_max.

``curvature`` (secant, Barzilai–Borwein form): with ``s = θ_t − θ_{t−k}`` and
``y = g_t − g_{t−k}`` between two sampled steps, ``κ = sᵀy / sᵀs`` estimates the Hessian's
curvature along the recent displacement (exact for a quadratic with noise-free gradients).
Consecutive mini-batches mix gradient noise into y, so numerator and denominator are
averaged separately over time before dividing.

``hessian_eig`` (opt-in): top eigenvalue of the Hessian by power iteration with
Hessian-vector products (double backward) on the loss returned by the context's closure,
warm-started from the previous eigenvector. Optionally in Adam's preconditioned metric
``P^{-1/2} H P^{-1/2}``, ``P = diag(√v̂ + ε)`` (Cohen et al. 2022), and always scaled by
each group's learning rate, so that ``hessian_eig.edge`` ≈ 1 means "at the edge of
stability": ``ηλ/2`` for GD, ``ηλ/(2 + 2μ)`` with heavy-ball momentum μ,
``ηλ_P (1 − β1)/(2 + 2β1)`` for Adam.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from cadence.checks import check_beta, check_float, check_int
from cadence.protocol import SIGNALS, MeasureContext, Signal
from cadence.signals._stats import optimizer_state
from cadence.stats import Ema, finite

__all__ = ["SecantCurvature", "HessianEig"]


@SIGNALS.register("curvature")
class SecantCurvature(Signal):
    """Secant curvature ``sᵀy / sᵀs`` between sampled steps, per group and overall.

    Keys: raw ``curvature.sy/{g}``, ``curvature.ss/{g}`` and derived ``curvature/{g}``,
    ``curvature`` (ratio of EMAs; 0 until two samples exist), ``curvature.valid``.

    Cost on sampled steps (every ``every`` = 10 by default): two fused dot products per
    tensor; memory: one copy of the parameters and one of the gradients kept between
    samples (2× trainable parameters, float32). Sparse gradients are skipped.
    """

    name = "curvature"

    def __init__(self, every: int = 10, beta: float = 0.9, name: str = "curvature") -> None:
        self.name = name
        self.every = check_int("every", every)
        self.beta = check_beta("beta", beta)
        self._prev: dict[str, list[tuple[torch.Tensor, torch.Tensor] | None]] = {}
        self._ema: dict[str, tuple[Ema, Ema]] = {}

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        out: dict[str, float] = {}
        valid = False
        for group, params in ctx.params_by_group.items():
            prev = self._prev.get(group, [])
            cur: list[tuple[torch.Tensor, torch.Tensor] | None] = []
            acc: torch.Tensor | None = None
            for i, p in enumerate(params):
                g = p.grad
                if g is None or g.is_sparse:
                    cur.append(None)
                    continue
                theta = p.detach().to(torch.float32, copy=True).flatten()
                grad = g.detach().to(torch.float32, copy=True).flatten()
                old = prev[i] if i < len(prev) else None
                if old is not None and old[0].shape == theta.shape:
                    s = theta - old[0]
                    y = grad - old[1]
                    pair = torch.stack([torch.dot(s, y), torch.dot(s, s)])
                    acc = pair if acc is None else acc + pair
                cur.append((theta, grad))
            self._prev[group] = cur
            sy, ss = acc.tolist() if acc is not None else (0.0, 0.0)
            valid = valid or ss > 0
            out[f"{self.name}.sy/{group}"] = finite(sy)
            out[f"{self.name}.ss/{group}"] = finite(ss)
        out[f"{self.name}.valid"] = 1.0 if valid else 0.0
        return out

    def update(self, reduced: dict[str, float]) -> dict[str, float]:
        out = dict(reduced)
        tot_sy = tot_ss = 0.0
        prefix = f"{self.name}.sy/"
        for key in [k for k in reduced if k.startswith(prefix)]:
            group = key[len(prefix):]
            sy, ss = reduced[key], reduced.get(f"{self.name}.ss/{group}", 0.0)
            tot_sy, tot_ss = tot_sy + sy, tot_ss + ss
            out[f"{self.name}/{group}"] = self._fold(group, sy, ss)
        out[self.name] = self._fold("", tot_sy, tot_ss)
        return out

    def _fold(self, key: str, sy: float, ss: float) -> float:
        emas = self._ema.setdefault(key, (Ema(self.beta), Ema(self.beta)))
        if ss > 0:
            emas[0].update(sy)
            emas[1].update(ss)
        return emas[0].value / emas[1].value if emas[1].value > 0 else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {
            "ema": {k: (a.state_dict(), b.state_dict()) for k, (a, b) in self._ema.items()},
            "prev": {g: [None if t is None else (t[0].clone(), t[1].clone()) for t in ts]
                     for g, ts in self._prev.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._ema = {}
        for k, (a, b) in state["ema"].items():
            pair = (Ema(self.beta), Ema(self.beta))
            pair[0].load_state_dict(a)
            pair[1].load_state_dict(b)
            self._ema[k] = pair
        self._prev = {g: list(ts) for g, ts in state.get("prev", {}).items()}


@SIGNALS.register("hessian_eig")
class HessianEig(Signal):
    """Top Hessian eigenvalue (learning-rate scaled) by power iteration, every k steps.

    Needs ``MeasureContext.closure``: a function that recomputes the loss on a probe batch
    with its graph and does **not** call ``backward()`` (run the model in eval mode inside
    it if dropout or batch-norm statistics matter). Without a closure, a step on which it
    is due raises ``ValueError`` (it used to report 0, which read as a flat Hessian).

    Keys: ``hessian_eig`` (λ of the possibly preconditioned Hessian, divided back by the
    largest group lr), ``hessian_eig.edge`` (≈ 1 at the edge of stability, see module doc),
    ``hessian_eig.passes`` (gradient-equivalents spent by the last probe).

    Cost per probe (every ``every`` = 100 steps by default): one forward, one backward
    with ``create_graph=True`` and ``iters`` Hessian-vector products, each ≈ 2 backward
    passes: about ``2 + 2·iters`` gradient-equivalents (≈ 22 with the default 10), memory
    ≈ 2× activations. ``.grad`` fields are left as they were.
    """

    name = "hessian_eig"

    def __init__(
        self,
        every: int = 100,
        iters: int = 10,
        tol: float = 1e-3,
        preconditioned: bool = True,
        seed: int = 0,
        name: str = "hessian_eig",
    ) -> None:
        self.name = name
        self.every = check_int("every", every)
        self.iters = check_int("iters", iters)
        self.tol = check_float("tol", tol, 0.0, low_open=True)
        self.preconditioned = bool(preconditioned)
        self.seed = check_int("seed", seed, 0)
        self._vec: list[torch.Tensor] | None = None
        self._last = {f"{name}": 0.0, f"{name}.edge": 0.0, f"{name}.passes": 0.0}

    def _scales(self, ctx: MeasureContext, params: list[torch.Tensor]) -> tuple[
        list[torch.Tensor | float], float, float
    ]:
        """Per-tensor diagonal scaling sqrt(lr)·P^{-1/2}, the max lr and the edge divisor."""
        opt = ctx.optimizer
        group_of: dict[int, dict[str, Any]] = {}
        for pg in getattr(opt, "param_groups", []):
            for p in pg["params"]:
                group_of[id(p)] = pg
        scales: list[torch.Tensor | float] = []
        max_lr = 0.0
        divisor = 2.0
        for p in params:
            pg = group_of.get(id(p), {})
            lr = float(pg.get("lr", 1.0))
            max_lr = max(max_lr, lr)
            st = optimizer_state(opt, p)
            if self.preconditioned and "exp_avg_sq" in st and "betas" in pg and st.get("step"):
                b1, b2 = (float(b) for b in pg["betas"][:2])
                step = float(st["step"])
                v_hat = st["exp_avg_sq"].to(torch.float32) / (1.0 - b2**step)
                eps = float(pg.get("eps", 1e-8))
                scales.append(math.sqrt(lr) / (v_hat.sqrt() + eps).sqrt())
                divisor = (2.0 + 2.0 * b1) / (1.0 - b1) if b1 < 1 else divisor
            else:
                scales.append(math.sqrt(lr))
                mu = float(pg.get("momentum", 0.0) or 0.0)
                divisor = max(divisor, 2.0 + 2.0 * mu)
        return scales, max_lr, divisor

    def measure(self, ctx: MeasureContext) -> dict[str, float]:
        if ctx.closure is None:
            raise ValueError(
                f"{self.name} needs a loss closure and got none: call regime.step(loss, "
                "closure=fn), where fn() recomputes the loss on a probe batch with its graph "
                "and does not call backward() (or leave the hessian_eig signal out)"
            )
        params = [p for ps in ctx.params_by_group.values() for p in ps
                  if p.requires_grad and p.grad is not None and not p.grad.is_sparse]
        if not params:
            return dict(self._last)
        saved = [p.grad for p in params]
        try:
            lam, passes, max_lr, divisor = self._power_iteration(ctx, params)
        finally:
            for p, g in zip(params, saved, strict=True):
                p.grad = g
        self._last = {
            self.name: finite(lam / max_lr) if max_lr > 0 else 0.0,
            f"{self.name}.edge": finite(lam / divisor),
            f"{self.name}.passes": float(passes),
        }
        return dict(self._last)

    def _power_iteration(
        self, ctx: MeasureContext, params: list[torch.Tensor]
    ) -> tuple[float, int, float, float]:
        assert ctx.closure is not None
        with torch.enable_grad():
            loss = ctx.closure()
            if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
                raise ValueError(
                    "hessian_eig needs a closure returning a loss tensor with its graph; "
                    f"got {type(loss).__name__}"
                )
            try:
                grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            except RuntimeError as err:  # graph already freed by a backward() inside
                raise ValueError(
                    "hessian_eig: the closure must return the loss without calling backward()"
                ) from err
        pairs = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None]
        params = [p for p, _ in pairs]
        grads_l = [g for _, g in pairs]
        scales, max_lr, divisor = self._scales(ctx, params)
        if self._vec is None or [v.shape for v in self._vec] != [p.shape for p in params]:
            gen = torch.Generator().manual_seed(self.seed)
            self._vec = [torch.randn(p.shape, generator=gen).to(p.device) for p in params]
        v = self._normalise(self._vec)
        lam = 0.0
        passes = 2
        for _ in range(self.iters):
            w = [(s * vi).to(p.dtype) for s, vi, p in zip(scales, v, params, strict=True)]
            hw = torch.autograd.grad(grads_l, params, grad_outputs=w, retain_graph=True,
                                     allow_unused=True)
            passes += 2
            hv = [s * (h.to(torch.float32) if h is not None else torch.zeros_like(vi))
                  for s, h, vi in zip(scales, hw, v, strict=True)]
            new_lam = float(sum((a * b).sum() for a, b in zip(v, hv, strict=True)))
            v = self._normalise(hv)
            converged = abs(new_lam - lam) <= self.tol * max(abs(new_lam), 1e-12)
            lam = new_lam
            if converged:
                break
        self._vec = [t.detach() for t in v]
        return lam, passes, max_lr, divisor

    @staticmethod
    def _normalise(vs: list[torch.Tensor]) -> list[torch.Tensor]:
        vs = [t.detach().to(torch.float32) for t in vs]
        norm = math.sqrt(sum(float(t.square().sum()) for t in vs))
        return [t / norm for t in vs] if norm > 0 else vs

    def state_dict(self) -> dict[str, Any]:
        return {"vec": None if self._vec is None else [t.clone() for t in self._vec],
                "last": dict(self._last)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._vec = state["vec"]
        self._last = dict(state["last"])
