"""Objectives with a known optimum: an ill-conditioned quadratic, the Rosenbrock valley,
and multinomial logistic regression on MNIST-1D (optimum found once by L-BFGS).

The metric is suboptimality ``f(x) - f*`` (primary ``"loss"``, lower is better), the same
on every split. Weight decay is forced to 0 (``weight_decay = 0.0``): it would move the
optimum. Optional gradient noise enters as ``f(x) + <ξ, x>`` with ``ξ ~ N(0, σ²I)`` drawn
from the run's generator, an unbiased gradient perturbation of known variance.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import EpochOrder, Workload, cached_arrays
from .mnist1d import mnist1d_arrays


class Point(nn.Module):
    """The iterate as a module, so optimizers and ``cadence.param_groups`` see one tensor."""

    def __init__(self, x0: torch.Tensor) -> None:
        super().__init__()
        self.x = nn.Parameter(x0.clone())


class _Synthetic(Workload):
    task = "regression"
    primary = "loss"
    higher_is_better = False
    batch_size = 1
    weight_decay = 0.0
    metric_floor = 1e-6
    noise = 0.0
    dim = 2

    def f(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def batch(self, step: int, gen: torch.Generator) -> torch.Tensor | None:
        if self.noise == 0.0:
            return None
        return self.noise * torch.randn(self.dim, generator=gen)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x = _tensor(model, "x")
        value = self.f(x)
        if batch is not None:
            value = value + (batch * x).sum()
        return value

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        return {"loss": float(self.f(_tensor(model, "x")))}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "noise": self.noise, "dim": self.dim}


class Quadratic(_Synthetic):
    """``½ (x-x*)ᵀ H (x-x*)`` in d = 100 with eigenvalues log-spaced 1e-3 … 1 (κ = 1000)
    in a fixed random basis; f* = 0. Init x* + N(0, I)."""

    name = "quadratic"
    description = "ill-conditioned quadratic, d=100, kappa=1e3"
    dim = 100
    steps = 2000
    eval_every = 100

    def __init__(self, noise: float = 0.0) -> None:
        self.noise = noise
        if noise:
            self.name = "quadratic-noisy"
            self.description += f", gradient noise sigma={noise}"
        g = torch.Generator().manual_seed(1234)
        q, _ = torch.linalg.qr(torch.randn(self.dim, self.dim, generator=g, dtype=torch.float64))
        eig = torch.logspace(-3, 0, self.dim, dtype=torch.float64)
        self.h = ((q * eig) @ q.T).float()
        self.h = 0.5 * (self.h + self.h.T)
        self.x_star = torch.randn(self.dim, generator=g)

    def make_model(self) -> nn.Module:
        return Point(self.x_star + torch.randn(self.dim))

    def f(self, x: torch.Tensor) -> torch.Tensor:
        e = x - self.x_star
        return 0.5 * e @ (self.h @ e)


class Rosenbrock(_Synthetic):
    """Generalised Rosenbrock in d = 10, f* = 0 at (1, …, 1); init around (-1.2, 1, …)."""

    name = "rosenbrock"
    description = "Rosenbrock valley, d=10"
    dim = 10
    steps = 2000
    eval_every = 100

    def make_model(self) -> nn.Module:
        x0 = torch.tensor([-1.2, 1.0] * (self.dim // 2)) + 0.1 * torch.randn(self.dim)
        return Point(x0)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


class LogReg(Workload):
    """Multinomial logistic regression on MNIST-1D (40 → 10) with L2 λ = 1e-3, so the
    optimum is unique; f* from full-batch float64 L-BFGS, cached. Mini-batches of 100."""

    name = "logreg"
    task = "regression"
    primary = "loss"
    higher_is_better = False
    description = "MNIST-1D multinomial logistic regression, L2 1e-3, suboptimality"
    batch_size = 100
    steps = 2000
    eval_every = 100
    weight_decay = 0.0
    metric_floor = 1e-6
    l2 = 1e-3

    def __init__(self) -> None:
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.f_star = 0.0
        self._order = EpochOrder()

    def prepare(self) -> None:
        if self.x is not None:
            return
        x, y = mnist1d_arrays()["train"]
        self.x, self.y = torch.as_tensor(x), torch.as_tensor(y)
        arrays = cached_arrays("logreg-opt", {"v": 1, "l2": self.l2}, self._solve)
        self.f_star = float(arrays["f_star"])
        self.test = {k: tuple(map(torch.as_tensor, v)) for k, v in mnist1d_arrays().items()}

    def _objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = _tensor(model, "weight")
        return F.cross_entropy(model(x), y) + 0.5 * self.l2 * (w * w).sum()

    def _solve(self) -> dict[str, np.ndarray]:
        assert self.x is not None and self.y is not None
        model = nn.Linear(40, 10).double()
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        x, y = self.x.double(), self.y
        opt = torch.optim.LBFGS(
            model.parameters(), lr=1, max_iter=2000, tolerance_grad=1e-12,
            tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = self._objective(model, x, y)
            loss.backward()
            return loss

        for _ in range(5):
            opt.step(closure)
        with torch.no_grad():
            return {"f_star": np.array(self._objective(model, x, y).item())}

    def make_model(self) -> nn.Module:
        return nn.Linear(40, 10)

    def batch(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.prepare()
        assert self.x is not None and self.y is not None
        idx = self._order.indices(self.x.shape[0], self.batch_size, step, gen)
        return self.x[idx], self.y[idx]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return self._objective(model, *batch)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        self.prepare()
        assert self.x is not None and self.y is not None
        w, b = _tensor(model, "weight").double(), _tensor(model, "bias").double()
        logits = self.x.double() @ w.T + b
        full = F.cross_entropy(logits, self.y) + 0.5 * self.l2 * (w * w).sum()
        sub = full.item() - self.f_star
        x, y = self.test[split]
        acc = (model(x).argmax(1) == y).float().mean().item()
        return {"loss": sub, "acc": acc}


def _tensor(model: nn.Module, name: str) -> torch.Tensor:
    """``model.<name>``, a parameter (``nn.Module.__getattr__`` is typed tensor-or-module)."""
    return cast(torch.Tensor, getattr(model, name))
