"""Curvature (secant, Hessian power iteration), saturation hooks, edge cases, resume."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from _signal_helpers import make_ctx, run_signal
from cadence.protocol import SIGNALS
from cadence.signals.curvature import HessianEig, SecantCurvature
from cadence.signals.saturation import Saturation


def _quadratic(diag: torch.Tensor):
    p = torch.nn.Parameter(torch.ones(len(diag)))

    def loss_fn() -> torch.Tensor:
        return 0.5 * (diag * p * p).sum()

    return p, loss_fn


def test_secant_curvature_recovers_directional_curvature_of_a_quadratic() -> None:
    diag = torch.linspace(1.0, 10.0, 20)
    p, loss_fn = _quadratic(diag)
    opt = torch.optim.SGD([p], lr=0.05)
    sig = SecantCurvature(every=1, beta=0.0)
    thetas = []
    for step in range(2):
        opt.zero_grad()
        loss_fn().backward()
        thetas.append(p.detach().clone())
        out = run_signal(sig, make_ctx(opt, step))
        opt.step()
    s = thetas[1] - thetas[0]
    expected = float((s * diag * s).sum() / (s * s).sum())  # sᵀHs / sᵀs
    assert out["curvature"] == pytest.approx(expected, rel=1e-5)
    assert 1.0 <= out["curvature"] <= 10.0


def test_hessian_eig_matches_eigvalsh_and_leaves_grads_alone() -> None:
    diag = torch.linspace(0.5, 8.0, 30)
    p, loss_fn = _quadratic(diag)
    opt = torch.optim.SGD([p], lr=0.1)
    loss_fn().backward()
    grad_before = p.grad.clone()
    sig = HessianEig(every=1, iters=100, tol=1e-8)
    out = sig.measure(make_ctx(opt, closure=loss_fn))
    assert out["hessian_eig"] == pytest.approx(8.0, rel=1e-3)
    assert out["hessian_eig.edge"] == pytest.approx(0.1 * 8.0 / 2.0, rel=1e-3)  # ηλ/2
    assert torch.equal(p.grad, grad_before)
    assert out["hessian_eig.passes"] <= 2 + 2 * 100


def test_hessian_eig_in_adam_preconditioned_metric() -> None:
    torch.manual_seed(0)
    a = torch.randn(12, 12)
    hess = a @ a.T / 12 + torch.eye(12)
    p = torch.nn.Parameter(torch.randn(12))

    def loss_fn() -> torch.Tensor:
        return 0.5 * p @ hess @ p

    opt = torch.optim.Adam([p], lr=0.01, betas=(0.9, 0.99))
    for _ in range(5):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    st = opt.state[p]
    v_hat = st["exp_avg_sq"] / (1 - 0.99 ** float(st["step"]))
    d = (0.01 / (v_hat.sqrt() + 1e-8)).sqrt()
    ref = torch.linalg.eigvalsh(d[:, None] * hess * d[None, :]).max()
    out = HessianEig(iters=200, tol=1e-10).measure(make_ctx(opt, closure=loss_fn))
    assert out["hessian_eig.edge"] == pytest.approx(float(ref) * 0.1 / 3.8, rel=1e-3)


def test_hessian_eig_rejects_a_closure_that_calls_backward() -> None:
    p, loss_fn = _quadratic(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    loss_fn().backward()

    def bad() -> torch.Tensor:
        loss = loss_fn()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="backward"):
        HessianEig().measure(make_ctx(opt, closure=bad))
    with pytest.raises(ValueError, match="hessian_eig needs a loss closure"):
        HessianEig().measure(make_ctx(opt))  # no closure: an error, not a silent 0


def test_saturation_hooks_measure_one_training_forward() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 64)
    model = torch.nn.Sequential(lin, torch.nn.Tanh(), torch.nn.Linear(64, 32), torch.nn.ReLU())
    with torch.no_grad():
        model[2].bias[:8] = -100.0  # 8 of 32 ReLU units can never fire: dead
    sig = Saturation(model, every=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 4) * 20
    model(x)
    out = sig.measure(make_ctx(opt))
    h = torch.tanh(lin(x))
    expected_sat = float((h.abs() > 0.97).float().mean())
    assert out["saturation/1"] == pytest.approx(expected_sat)
    assert out["saturation.max"] == pytest.approx(expected_sat)
    relu = model[3](model[2](h))
    expected_dead = float((relu <= 0).all(0).float().mean())
    assert out["saturation/3"] == pytest.approx(expected_dead)
    assert out["saturation.dead_max"] >= 8 / 32
    model.eval()
    model(torch.zeros(2, 4))  # eval forwards are ignored
    model.train()
    assert sig.measure(make_ctx(opt))["saturation/1"] == pytest.approx(expected_sat)
    sig.close()
    assert not model[1]._forward_hooks


# -- edge cases: frozen, sparse, bf16, empty groups, optimizers without momentum ----------

def _edge_setup(opt_name: str):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(20, 4, sparse=opt_name != "adamw")
    body = torch.nn.Linear(4, 4).to(torch.bfloat16)
    frozen = torch.nn.Linear(4, 4)
    frozen.weight.requires_grad_(False)
    unused = torch.nn.Linear(3, 3)  # trainable, never receives a gradient
    groups = [
        {"params": list(emb.parameters()), "name": "emb"},
        {"params": list(body.parameters()) + list(frozen.parameters()), "name": "body"},
        {"params": list(unused.parameters()), "name": "unused"},
        {"params": [], "name": "empty"},
    ]
    if opt_name == "sgd":
        opt = torch.optim.SGD(groups, lr=0.1)
    elif opt_name == "adagrad":
        opt = torch.optim.Adagrad(groups, lr=0.1)
    else:
        opt = torch.optim.AdamW(groups, lr=0.1)

    def forward() -> torch.Tensor:
        idx = torch.randint(0, 20, (8,), generator=torch.Generator().manual_seed(1))
        return frozen(body(emb(idx).to(torch.bfloat16)).float()).square().mean()

    def backward() -> float:
        opt.zero_grad()
        loss = forward()
        loss.backward()
        return float(loss.detach())

    backward.forward = forward  # type: ignore[attr-defined]  # the loss closure of probes
    return opt, backward


SIMPLE = ["grad_norms", "grad_alignment", "grad_noise", "update_ratio", "curvature",
          "loss_trend", "drift", "hessian_eig"]


@pytest.mark.parametrize("opt_name", ["sgd", "adagrad", "adamw"])
def test_every_signal_survives_awkward_parameters(opt_name: str) -> None:
    opt, backward = _edge_setup(opt_name)
    signals = [SIGNALS.create(name) for name in SIMPLE]
    for step in range(4):
        loss = backward()
        ctx = make_ctx(opt, step, loss, closure=backward.forward)
        for sig in signals:
            out = run_signal(sig, ctx)
            assert all(math.isfinite(v) for v in out.values()), (sig.name, out)
            keys = set(out)
            if sig.name in ("grad_norms", "grad_alignment", "update_ratio"):
                assert f"{sig.name}/empty" in keys
        opt.step()
        for sig in signals:
            if hasattr(sig, "after_step"):
                sig.after_step(ctx)
    norms = run_signal(SIGNALS.create("grad_norms"), make_ctx(opt))
    assert norms["grad_norms/unused"] == 0.0 and norms["grad_norms/empty"] == 0.0
    grad = opt.param_groups[0]["params"][0].grad
    dense = grad.to_dense() if grad.is_sparse else grad
    assert norms["grad_norms/emb"] == pytest.approx(float(dense.norm()), rel=1e-5)


@pytest.mark.parametrize("name", SIMPLE)
def test_signal_state_round_trip_gives_identical_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    kwargs = {"every": 1} if name not in ("loss_trend", "drift") else {}
    if name in ("loss_trend", "drift"):
        kwargs = {"window": 10}
    sig = SIGNALS.create(name, **kwargs)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 5, generator=gen), torch.randn(64, 2, generator=gen)

    def context(i):
        opt.zero_grad()
        loss = (model(x[i::8]) - y[i::8]).square().mean()
        loss.backward()
        return make_ctx(opt, i, float(loss.detach()),
                        closure=lambda: (model(x) - y).square().mean())

    for i in range(30):
        ctx = context(i)
        run_signal(sig, ctx)
        opt.step()
        if hasattr(sig, "after_step"):
            sig.after_step(ctx)
    clone = SIGNALS.create(name, **kwargs)
    clone.load_state_dict(copy.deepcopy(sig.state_dict()))
    for i in range(30, 33):
        ctx = context(i)
        a, b = run_signal(sig, ctx), run_signal(clone, ctx)
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9)
        opt.step()
        if hasattr(sig, "after_step"):
            sig.after_step(ctx)
            clone.after_step(ctx)
