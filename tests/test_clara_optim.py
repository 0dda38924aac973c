"""ClaraSGD / ClaraAdam: exact equations (float64 transcription, torch's own SGD/Adam), the
closed-form behaviour of the rule, the random-walk reference on pure noise, resume, errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from cadence.optim import ClaraAdam, ClaraSGD, random_walk_std, reference_mu
from cadence.optim.reference import clara_adam_reference, clara_sgd_reference

SHAPES = [(3, 4), (4,), (5,), (2, 2)]


def _problem(seed: int = 0):
    """Two groups; tensor 1 gets a zero gradient every 5th step, tensor 2 none on odd steps,
    tensor 3 is frozen."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=s) for s in SHAPES]
    targets = [rng.normal(size=s) for s in SHAPES]
    noise = rng.normal(size=(200, sum(int(np.prod(s)) for s in SHAPES)))

    def grad_fn(t, params):
        flat = [x for gp in params for x in gp]
        out, offset = [], 0
        for k, (x, tgt) in enumerate(zip(flat, targets, strict=True)):
            n = x.size
            g = (k + 1.0) * (x - tgt) + 0.3 * noise[t, offset:offset + n].reshape(x.shape)
            offset += n
            if k == 1 and t % 5 == 4:
                g = np.zeros_like(g)  # zero direction (SGD without momentum): not counted
            out.append(None if (k == 2 and t % 2) or k == 3 else g)
        return [out[:2], out[2:]]

    return init, grad_fn


def _run_torch(opt_cls, init, grad_fn, steps, lrs, **kw):
    ps = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in init]
    ps[3].requires_grad_(False)
    opt = opt_cls([{"params": ps[:2], "lr": lrs[0]}, {"params": ps[2:], "lr": lrs[1]}], **kw)
    history = []
    for t in range(steps):
        grads = grad_fn(t, [[p.detach().numpy() for p in ps[:2]],
                            [p.detach().numpy() for p in ps[2:]]])
        for p, g in zip(ps, grads[0] + grads[1], strict=True):
            p.grad = None if g is None else torch.tensor(g)
        opt.step()
        history.append([g["lr"] for g in opt.param_groups])
    return [p.detach().numpy() for p in ps], history


@pytest.mark.parametrize("variant", ["adapted", "unit"])
@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 0.01)])
def test_sgd_matches_float64_transcription(variant, momentum, wd):
    init, grad_fn = _problem()
    kw = dict(momentum=momentum, weight_decay=wd, c=0.2, damping=0.05, variant=variant)
    got, lr_got = _run_torch(ClaraSGD, init, grad_fn, 50, (0.05, 0.01), **kw)
    groups = [{"params": init[:2], "lr": 0.05}, {"params": init[2:], "lr": 0.01}]
    want, lr_want = clara_sgd_reference(groups, grad_fn, 50, **kw)
    np.testing.assert_allclose(lr_got, lr_want, rtol=1e-12)
    for a, b in zip(got, want[0] + want[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert lr_got[-1][0] != pytest.approx(0.05, rel=1e-3)  # the rule did move the lr
    np.testing.assert_array_equal(got[3], init[3])  # frozen tensor untouched


@pytest.mark.parametrize("variant", ["adapted", "unit"])
@pytest.mark.parametrize("wd,decoupled", [(0.0, False), (0.02, False), (0.02, True)])
def test_adam_matches_float64_transcription(variant, wd, decoupled):
    init, grad_fn = _problem(1)
    kw = dict(betas=(0.8, 0.99), eps=1e-8, weight_decay=wd, decoupled_weight_decay=decoupled,
              c=0.3, damping=0.05, variant=variant)
    got, lr_got = _run_torch(ClaraAdam, init, grad_fn, 50, (0.02, 0.1), **kw)
    groups = [{"params": init[:2], "lr": 0.02}, {"params": init[2:], "lr": 0.1}]
    want, lr_want = clara_adam_reference(groups, grad_fn, 50, **kw)
    np.testing.assert_allclose(lr_got, lr_want, rtol=1e-12)
    for a, b in zip(got, want[0] + want[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def _torch_twin(opt, ref, steps=30):
    torch.manual_seed(0)
    w0 = torch.randn(6, 5, dtype=torch.float64)
    x = torch.randn(32, 5, dtype=torch.float64)
    y = torch.randn(32, 6, dtype=torch.float64)
    ws = [w0.clone().requires_grad_(True), w0.clone().requires_grad_(True)]
    opts = [opt([ws[0]]), ref([ws[1]])]
    for _ in range(steps):
        for w, o in zip(ws, opts, strict=True):
            o.zero_grad()
            ((x @ w.T - y) ** 2).mean().backward()
            o.step()
    return ws


def test_zero_damping_is_torch_sgd():
    a, b = _torch_twin(lambda p: ClaraSGD(p, lr=0.05, momentum=0.9, weight_decay=0.01, damping=0),
                       lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_zero_damping_is_torch_adam_and_adamw():
    a, b = _torch_twin(lambda p: ClaraAdam(p, lr=0.01, weight_decay=0.1, damping=0),
                       lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1))
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    a, b = _torch_twin(
        lambda p: ClaraAdam(p, lr=0.01, weight_decay=0.1, damping=0, decoupled_weight_decay=True),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1))
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _scripted(opt, grads):
    """Feed a fixed list of gradient tensors (one tensor per step) and return the lrs."""
    (p,) = opt.param_groups[0]["params"]
    lrs = [opt.param_groups[0]["lr"]]
    for g in grads:
        p.grad = g.clone()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_constant_gradient_grows_lr_by_closed_form():
    # Aligned steps: p_t = (1 - a^t) u, so log lr_T = log lr_0 + d sum_t ((1-a^t)^2 / mu - 1).
    c, d, steps = 0.2, 0.01, 40
    p = torch.zeros(7, dtype=torch.float64, requires_grad=True)
    g = torch.linspace(-1, 2, 7, dtype=torch.float64)
    lrs = _scripted(ClaraSGD([p], lr=1e-3, c=c, damping=d), [g] * steps)
    a, mu = 1 - c, c / (2 - c)
    expected = 1e-3 * math.exp(d * sum((1 - a**t) ** 2 / mu - 1 for t in range(1, steps + 1)))
    assert lrs[-1] == pytest.approx(expected, rel=1e-12)
    assert lrs[-1] / lrs[-2] == pytest.approx(math.exp(d * (1 / mu - 1)), rel=1e-3)


def test_alternating_gradient_shrinks_lr_by_closed_form():
    # Cancelling steps: |p_t| = c (1 - (-a)^t) / (1 + a); the factor tends to exp(d (mu - 1)).
    c, d, steps = 0.2, 0.01, 40
    p = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    g = torch.arange(1.0, 6.0, dtype=torch.float64)
    grads = [g if t % 2 == 0 else -g for t in range(steps)]
    lrs = _scripted(ClaraSGD([p], lr=1.0, c=c, damping=d, variant="unit"), grads)
    a, mu = 1 - c, c / (2 - c)
    norms = [c * (1 - (-a) ** t) / (1 + a) for t in range(1, steps + 1)]
    log_expected = d * sum(n**2 / mu - 1 for n in norms)
    assert math.log(lrs[-1]) == pytest.approx(log_expected, rel=1e-10)
    assert lrs[-1] / lrs[-2] == pytest.approx(math.exp(d * (mu - 1)), rel=1e-6)


def test_lr_shrinks_on_narrow_quadratic_with_too_large_lr():
    # f = h x^2 / 2 with lr h = 5: plain SGD oscillates with growing amplitude.
    h = 100.0
    x = torch.ones(1, dtype=torch.float64, requires_grad=True)
    opt = ClaraSGD([x], lr=0.05, damping=0.1)
    lrs, losses = [0.05], []
    for _ in range(60):
        opt.zero_grad()
        loss = 0.5 * h * (x**2).sum()
        loss.backward()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        losses.append(loss.item())
    unstable = [i for i, lr in enumerate(lrs) if lr * h > 2]
    assert len(unstable) < 20  # reached the stable range within 20 steps
    assert all(lrs[i + 1] < lrs[i] for i in unstable)  # shrinking while steps alternate
    assert losses[-1] < 1e-12 * losses[0]


def _noise_ratio(opt_cls, seeds=3, steps=600, burn=150, n=2000, **kw):
    ratios = []
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(seed)
        ps = [torch.zeros(n, requires_grad=True), torch.zeros(n // 2, requires_grad=True)]
        opt = opt_cls(ps, lr=1e-3, damping=0.0, **kw)
        for t in range(steps):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
            if t >= burn:
                ratios.append(opt.last_ratio)
    return float(np.mean(ratios))


def test_pure_noise_keeps_lr_in_expectation_sgd():
    assert _noise_ratio(ClaraSGD) == pytest.approx(1.0, abs=0.01)
    assert _noise_ratio(ClaraSGD, momentum=0.9, variant="unit") == pytest.approx(1.0, abs=0.03)


def test_pure_noise_keeps_lr_in_expectation_adam():
    # The corrected reference mu_A makes rho ~ 1; the SGD reference would read 6.14x too long.
    ratio = _noise_ratio(ClaraAdam)
    assert ratio == pytest.approx(1.0, abs=0.03)
    naive = ratio * reference_mu(0.2, 0.9) / reference_mu(0.2)
    assert naive == pytest.approx(6.14, rel=0.03)


def test_pure_noise_log_lr_drift_near_zero_with_damping():
    drifts = []
    for seed in range(4):
        gen = torch.Generator().manual_seed(100 + seed)
        p = torch.zeros(1000, requires_grad=True)
        opt = ClaraAdam([p], lr=1e-2, damping=0.01)
        for _ in range(400):
            p.grad = torch.randn(1000, generator=gen)
            opt.step()
        drifts.append(math.log(opt.param_groups[0]["lr"] / 1e-2) / 400)
    # all-aligned steps would give +0.0046 per step, all-cancelling about -0.0098
    assert abs(float(np.mean(drifts))) < 5e-4


def test_random_walk_std_matches_monte_carlo():
    rng = np.random.default_rng(0)
    n, c = 400, 0.2
    path, values = np.zeros((64, n)), []
    for t in range(300):
        u = rng.normal(size=(64, n))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        path = (1 - c) * path + c * u
        if t > 60:
            values.append((path**2).sum(axis=1))
    assert np.std(values) == pytest.approx(random_walk_std(c, n), rel=0.1)
    assert np.mean(values) == pytest.approx(reference_mu(c), rel=0.01)


def test_state_dict_resume_is_exact():
    def run(opt, p, gen, steps):
        for _ in range(steps):
            p.grad = torch.randn(p.shape, generator=gen) + 0.5
            opt.step()

    for cls, kw in [(ClaraSGD, {"momentum": 0.9}), (ClaraAdam, {})]:
        gen = torch.Generator().manual_seed(0)
        p = torch.zeros(50, requires_grad=True)
        opt = cls([p], lr=0.01, damping=0.05, **kw)
        run(opt, p, gen, 10)
        saved, p_saved = copy.deepcopy(opt.state_dict()), p.detach().clone()
        gen_saved = gen.get_state()
        run(opt, p, gen, 10)

        q = p_saved.clone().requires_grad_(True)
        opt2 = cls([q], lr=123.0, **kw)
        opt2.load_state_dict(saved)
        gen2 = torch.Generator()
        gen2.set_state(gen_saved)
        run(opt2, q, gen2, 10)
        torch.testing.assert_close(q, p, rtol=0, atol=0)
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_no_gradients_leaves_lr_alone():
    p = torch.zeros(3, requires_grad=True)
    opt = ClaraSGD([p], lr=0.1, damping=0.5)
    opt.step()
    assert opt.param_groups[0]["lr"] == 0.1 and opt.last_ratio is None


def test_unit_variant_step_length_is_lr_per_tensor():
    ps = [torch.zeros(10, requires_grad=True), torch.zeros(3, requires_grad=True)]
    opt = ClaraAdam(ps, lr=0.5, variant="unit")
    for p, s in zip(ps, (1e-3, 1e3), strict=True):
        p.grad = torch.randn(p.shape) * s
    opt.step()
    for p in ps:
        assert torch.linalg.vector_norm(p).item() == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"c": 0.0}, "c must"),
        ({"c": 1.5}, "c must"),
        ({"damping": -0.1}, "damping"),
        ({"variant": "fast"}, "variant"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"momentum": 1.0}, "momentum"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClaraSGD([torch.zeros(1, requires_grad=True)], **kwargs)


def test_bad_adam_arguments_raise():
    p = [torch.zeros(1, requires_grad=True)]
    with pytest.raises(ValueError, match="betas"):
        ClaraAdam(p, betas=(0.9,))
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        ClaraAdam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps"):
        ClaraAdam(p, eps=-1.0)


def test_mixed_damping_across_groups_raises():
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = ClaraSGD([{"params": [a]}, {"params": [b], "damping": 0.5}])
    a.grad, b.grad = torch.ones(1), torch.ones(1)
    with pytest.raises(ValueError, match="damping"):
        opt.step()


def test_reference_mu_closed_form_values():
    assert reference_mu(0.2) == pytest.approx(1 / 9)
    assert reference_mu(0.2, 0.9) == pytest.approx(0.6825, abs=1e-4)  # Monte Carlo: 0.6825
    assert reference_mu(0.1, 0.9) == pytest.approx(0.5014, abs=1e-4)
    with pytest.raises(ValueError, match="beta"):
        reference_mu(0.2, 1.0)
