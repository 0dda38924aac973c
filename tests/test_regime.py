"""Regime core: step flow, lr = base × schedule × multiplier, presets, knob mapping."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

import cadence
from cadence.protocol import Controller, Proposal
from cadence.regime import Regime
from cadence.regime.knobs import has_knob, read_knob, write_knob


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + i)
    x = torch.randn(16, 4, generator=g)
    return x, x.sum(1, keepdim=True)


def loss_of(model: torch.nn.Module, i: int) -> torch.Tensor:
    x, y = batch(i)
    return ((model(x) - y) ** 2).mean()


def lrs_used(optimizer: torch.optim.Optimizer) -> list[list[float]]:
    """Record the lr of every group at each optimizer.step (via a pre-hook)."""
    seen: list[list[float]] = []
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: seen.append([float(g["lr"]) for g in opt.param_groups])
    )
    return seen


class Fixed(Controller):
    """Test controller: returns the proposals of the current step from a dict."""

    def __init__(self, name: str, plan: dict[int, list[Proposal]]) -> None:
        self.name, self.plan = name, plan

    def propose(self, signals, context):
        return self.plan.get(context.step, [])

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def hf_cosine(step: int, total: int, warmup: int) -> float:
    """Hugging Face get_cosine_schedule_with_warmup, transcribed."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def test_cosine_preset_lr_follows_closed_form():
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    seen = lrs_used(opt)
    regime = Regime(opt, total_steps=40, preset="cosine")
    for i in range(40):
        loss = loss_of(model, i)
        loss.backward()
        assert regime.step(loss) is True
    assert regime.step_count == 40
    # default warmup = 5% of 40 = 2 steps
    expected = [0.01 * hf_cosine(s, 40, 2) for s in range(40)]
    assert [s[0] for s in seen] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert opt.param_groups[0]["cadence_base_lr"] == 0.01
    assert opt.param_groups[0]["cadence_lr_mult"] == 1.0


def test_constant_preset_matches_bare_optimizer_bit_for_bit():
    m1, m2 = make_model(), make_model()
    o1 = torch.optim.Adam(m1.parameters(), lr=0.01)
    o2 = torch.optim.Adam(m2.parameters(), lr=0.01)
    regime = Regime(o2, preset="constant")
    for i in range(15):
        loss_of(m1, i).backward()
        o1.step()
        o1.zero_grad()
        loss = loss_of(m2, i)
        loss.backward()
        regime.step(loss)
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert all(p.grad is None for p in m2.parameters())  # zeroed by the regime


def test_preset_errors():
    opt = torch.optim.SGD(make_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="total_steps"):
        Regime(opt, preset="cosine")
    with pytest.raises(ValueError, match=r"unknown preset 'nope'.*constant.*cosine.*plateau"):
        Regime(opt, total_steps=10, preset="nope")
    with pytest.raises(ValueError, match="total_steps must be an int >= 1, got 0"):
        Regime(opt, total_steps=0)
    with pytest.raises(ValueError, match="total_steps must be an int >= 1, got 10.5"):
        Regime(opt, total_steps=10.5)


def test_auto_is_cosine_with_total_steps():
    opt = torch.optim.SGD(make_model().parameters(), lr=0.1)
    r = Regime(opt, total_steps=100)  # warmup: a quarter of this short run
    assert r.warmup_steps == 25
    assert r.schedules("group0", 50) == pytest.approx(hf_cosine(50, 100, 25))
    r = Regime(torch.optim.SGD(make_model().parameters(), lr=0.1), total_steps=100,
               warmup_steps=5)
    assert r.schedules("group0", 50) == pytest.approx(hf_cosine(50, 100, 5))


@pytest.mark.parametrize("total, warm", [(100, 25), (150, 38), (400, 50), (1000, 50),
                                         (1500, 75), (3000, 150), (10_000, 500)])
def test_autos_warmup_is_5_percent_but_at_least_50_updates_and_at_most_a_quarter(total, warm):
    r = Regime(torch.optim.AdamW(make_model().parameters(), lr=1e-3), total_steps=total)
    assert r.warmup_steps == warm
    assert r.schedules("group0", warm - 1) < 1 and r.schedules("group0", warm) == 1


# -- knob mapping -----------------------------------------------------------------------------
class TinyOpt(torch.optim.Optimizer):
    """A third-party-style optimizer with only lr and a custom 'decay' key."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr, "decay": 0.5})

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-g["lr"])


def _optimizers(params_fn):
    import schedulefree

    return {
        "SGD": (torch.optim.SGD(params_fn(), lr=0.1, momentum=0.9, weight_decay=1e-4), "momentum"),
        "Adam": (torch.optim.Adam(params_fn(), lr=1e-3), "betas"),
        "AdamW": (torch.optim.AdamW(params_fn(), lr=1e-3), "betas"),
        "RMSprop": (torch.optim.RMSprop(params_fn(), lr=1e-3, momentum=0.5), "momentum"),
        "Adagrad": (torch.optim.Adagrad(params_fn(), lr=1e-2), None),
        "AdamWScheduleFree": (schedulefree.AdamWScheduleFree(params_fn(), lr=1e-3), "betas"),
        "TinyOpt": (TinyOpt(params_fn()), None),
    }


def test_knob_mapping_per_optimizer():
    model = make_model()
    for name, (opt, mom) in _optimizers(model.parameters).items():
        g = opt.param_groups[0]
        assert has_knob(g, "lr")
        assert has_knob(g, "momentum") == (mom is not None), name
        assert has_knob(g, "beta2") == (mom == "betas"), name
        if mom == "betas":
            write_knob(g, "momentum", 0.8)
            write_knob(g, "beta2", 0.95)
            assert tuple(g["betas"][:2]) == (0.8, 0.95), name
            assert read_knob(g, "momentum") == 0.8
        elif mom == "momentum":
            write_knob(g, "momentum", 0.7)
            assert g["momentum"] == 0.7 and "betas" not in g
        if "weight_decay" in g:
            write_knob(g, "weight_decay", 0.05)
            assert g["weight_decay"] == 0.05


@pytest.mark.parametrize(
    "name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "AdamWScheduleFree", "TinyOpt"]
)
def test_regime_runs_and_adapts_every_optimizer(name):
    model = make_model()
    opt, _ = _optimizers(model.parameters)[name]
    if name == "AdamWScheduleFree":
        opt.train()
    cut = [Proposal(k, factor=0.9, source="test", reason="cut") for k in cadence.protocol.KNOBS]
    ctrl = Fixed("test", {2: cut})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        regime = Regime(opt, total_steps=10, preset="constant", controllers=[ctrl],
                        max_change=None)
        for i in range(4):
            loss = loss_of(model, i)
            loss.backward()
            assert regime.step(loss)
    missing = [k for k in cadence.protocol.KNOBS if k not in regime.knobs.available["group0"]]
    msgs = [str(x.message) for x in w if "has no" in str(x.message)]
    assert sorted(m.split("'")[1] for m in msgs) == sorted(missing)  # one warning per knob
    g = opt.param_groups[0]
    nonzero = {k for k in regime.knobs.available["group0"] if float(g[f"cadence_base_{k}"]) > 0}
    assert {e.knob for e in regime.events} == nonzero
    assert float(g["lr"]) == pytest.approx(0.9 * g["cadence_base_lr"])
    for k in regime.knobs.available["group0"]:
        if k != "lr":
            assert read_knob(g, k) == pytest.approx(0.9 * g[f"cadence_base_{k}"])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_tensor_lr_written_in_place():
    model = make_model()
    lr = torch.tensor(0.01)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    regime = Regime(opt, total_steps=10, preset="cosine", warmup_steps=0)
    loss = loss_of(model, 0)
    loss.backward()
    regime.step(loss)
    assert opt.param_groups[0]["lr"] is lr
    assert lr.item() == pytest.approx(0.01 * hf_cosine(1, 10, 0), rel=1e-6)


def test_base_values_stored_once():
    opt = torch.optim.SGD(make_model().parameters(), lr=0.1, momentum=0.9)
    Regime(opt, total_steps=10, preset="cosine", warmup_steps=5)
    assert opt.param_groups[0]["lr"] == 0.0  # warmup starts at 0
    r2 = Regime(opt, total_steps=10, preset="constant")  # must not take 0.0 as the base
    assert opt.param_groups[0]["cadence_base_lr"] == 0.1
    assert r2.values("group0")["lr"] == 0.1


# -- arbiter through the regime -----------------------------------------------------------------
def run_with(controllers, steps=6, groups=None, **kw):
    model = make_model()
    params = groups(model) if groups else model.parameters()
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.5)
    regime = Regime(opt, preset="constant", controllers=controllers, **kw)
    trace = []
    for i in range(steps):
        loss = loss_of(model, i)
        loss.backward()
        regime.step(loss)
        trace.append(regime.values())
    return regime, trace


def test_per_step_clamp_ramps_a_one_off_cut():
    ctrl = Fixed("cut", {0: [Proposal("lr", factor=0.5, reason="r", source="cut")]})
    regime, trace = run_with([ctrl], steps=10)
    lrs = [t["group0"]["lr"] for t in trace]
    # ÷1.1 per step until ×0.5 is reached: 0.5 = 1.1^-7.27 -> 8 changes
    expected = [0.1 * max(0.5, 1.1 ** -(k + 1)) for k in range(10)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert len(regime.events) == 8
    assert regime.events[1].reason.endswith("(ramping in)")
    assert all(e.source == "cut" and e.kind == "change" for e in regime.events)


def test_urgent_bypasses_clamp_but_not_bounds():
    ctrl = Fixed("g", {0: [Proposal("lr", factor=1e-9, urgent=True, source="g")]})
    regime, trace = run_with([ctrl], steps=2, bounds={"lr": (0.001, 1.0)})
    assert trace[0]["group0"]["lr"] == pytest.approx(0.001)
    assert len(regime.events) == 1
    ev = regime.events[0]
    assert (ev.old, ev.new) == (pytest.approx(0.1), pytest.approx(0.001))


def test_proposals_compose_as_product_and_sources_join():
    a = Fixed("a", {0: [Proposal("lr", factor=1.05, reason="ra", source="a")]})
    b = Fixed("b", {0: [Proposal("lr", factor=1.04, reason="rb", source="b")]})
    regime, trace = run_with([a, b], steps=1)
    assert trace[0]["group0"]["lr"] == pytest.approx(0.1 * 1.05 * 1.04)
    (ev,) = regime.events
    assert ev.source == "a+b" and ev.reason == "ra; rb"


def test_value_target_and_beta_horizon_clamp():
    ctrl = Fixed("m", {0: [Proposal("momentum", value=0.9, source="m")]})
    regime, trace = run_with([ctrl], steps=12)
    mom = [t["group0"]["momentum"] for t in trace]
    # 1 - momentum shrinks by at most /1.1 per step: 0.5 -> 0.1
    expected = [1 - max(0.1, 0.5 * 1.1 ** -(k + 1)) for k in range(12)]
    assert mom == pytest.approx(expected, rel=1e-12)


def test_tiny_change_is_not_an_event():
    ctrl = Fixed("t", {0: [Proposal("lr", factor=1 + 1e-12, source="t")]})
    regime, _ = run_with([ctrl], steps=2)
    assert regime.events == []


def test_max_lr_spread_and_unknown_group():
    def two_groups(model):
        return [
            {"params": model[0].parameters(), "name": "body"},
            {"params": model[2].parameters(), "name": "head"},
        ]

    up = Fixed("u", {s: [Proposal("lr", factor=1.1, group="head", source="u")] for s in range(10)})
    _, trace = run_with([up], steps=10, groups=two_groups, max_lr_spread=1.5)
    ratio = trace[-1]["head"]["lr"] / trace[-1]["body"]["lr"]
    assert ratio == pytest.approx(1.5)
    bad = Fixed("bad", {0: [Proposal("lr", factor=1.1, group="nope", source="bad")]})
    with pytest.raises(ValueError, match="unknown group 'nope'"):
        run_with([bad], steps=1, groups=two_groups)


def test_schedule_mapping_per_group_with_patterns():
    from cadence.schedules import Constant, Linear

    model = make_model()
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "name": "body.0"},
            {"params": model[2].parameters(), "name": "head"},
        ],
        lr=0.1,
    )
    sched = {"body.*": Constant(0.5), "head": Linear(1.0, 0.0, 10)}
    regime = Regime(opt, preset="constant", schedule=sched)
    assert regime.values("body.0")["lr"] == pytest.approx(0.05)
    assert regime.schedules("head", 5) == pytest.approx(Linear(1.0, 0.0, 10)(5))
    with pytest.raises(ValueError, match="does not exist"):
        Regime(opt, preset="constant", schedule={"haed": Constant(0.5)})


# -- records --------------------------------------------------------------------------------------
def test_log_dir_files(tmp_path):
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    ctrl = Fixed("c", {3: [Proposal("weight_decay", factor=1.05, reason="why", source="c")]})
    regime = Regime(opt, total_steps=20, preset="cosine", controllers=[ctrl], log_dir=tmp_path,
                    metrics_every=5)
    for i in range(10):
        loss = loss_of(model, i)
        loss.backward()
        regime.step(loss)
    regime.observe(val_loss=0.5)
    cfg = json.loads((tmp_path / "config.json").read_text())
    for key in ("preset", "total_steps", "controllers", "bounds", "optimizer", "groups",
                "cadence_version", "started", "guard", "max_change"):
        assert key in cfg
    assert "schedule" not in cfg  # only a schedule given by the user is configuration
    assert cfg["optimizer"]["class"] == "AdamW"
    assert cfg["groups"][0]["base"]["lr"] == 0.01
    assert cfg["groups"][0]["schedule"] == regime.schedules.by_group["group0"].to_dict()
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len(lines) == 1  # flushed without closing
    assert set(lines[0]) == {"step", "group", "knob", "old", "new", "source", "reason",
                             "signals", "kind"}
    assert lines[0]["step"] == 3 and lines[0]["knob"] == "weight_decay"
    assert lines[0]["new"] == pytest.approx(0.0105)
    mets = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in mets] == [5, 10, 10]
    assert mets[-1]["metrics"] == {"val_loss": 0.5}
    assert "metrics" not in mets[0]
    assert set(mets[0]["values"]["group0"]) == {"lr", "momentum", "beta2", "weight_decay"}
    assert (tmp_path / "snapshot.pt").exists()


def test_replan_stretches_the_rest_and_logs():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    regime = Regime(opt, total_steps=20, preset="cosine", warmup_steps=0)
    for i in range(10):
        loss = loss_of(model, i)
        loss.backward()
        regime.step(loss)
    before = regime.values("group0")["lr"]
    regime.replan(30)
    assert regime.values("group0")["lr"] == pytest.approx(before)  # continuous
    (ev,) = [e for e in regime.events if e.kind == "replan"]
    assert (ev.old, ev.new, ev.step) == (20, 30, 10)
    # the remaining 10 planned steps now take 20: step 20 of the new plan = step 15 of the old
    assert regime.schedules("group0", 20) == pytest.approx(hf_cosine(15, 20, 0))
    assert regime.schedules("group0", 30) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="not beyond"):
        regime.replan(5)


def test_config_json_round_trips_through_from_config(tmp_path):
    from cadence.controllers.plateau import Plateau
    from cadence.schedules import Constant

    def build(**kw):
        opt = torch.optim.AdamW(make_model().parameters(), lr=0.01)
        return Regime(opt, total_steps=50, preset="cosine", **kw)

    first = build(controllers=[Plateau(monitor="val_loss", patience=3)], schedule=Constant(0.5),
                  log_dir=tmp_path / "a", clip_norm=1.0, guard={"lr_cut": 0.3},
                  bounds={"lr": (0.0, 0.1)}, max_change=1.2)
    opt = torch.optim.AdamW(make_model().parameters(), lr=0.01)
    again = Regime.from_config(opt, tmp_path / "a" / "config.json", log_dir=tmp_path / "b")
    a, b = first.config(), again.config()
    a.pop("started"), b.pop("started")
    assert a == b
    first.close()
    again.close()


def test_smoothing_defers_part_of_each_move():
    ctrl = Fixed("s", {0: [Proposal("lr", factor=0.5, source="s")]})
    _, trace = run_with([ctrl], steps=3, max_change=None, smoothing=0.5)
    lrs = [t["group0"]["lr"] for t in trace]
    # each step covers half of the remaining log-distance to the target 0.05
    assert lrs == pytest.approx([0.1 * 0.5 ** (1 - 0.5 ** k) for k in (1, 2, 3)], rel=1e-12)


def test_total_steps_setter_replans():
    opt = torch.optim.SGD(make_model().parameters(), lr=0.1)
    regime = Regime(opt, total_steps=10, preset="cosine")
    regime.total_steps = 20
    assert regime.total_steps == 20 and regime.events[-1].kind == "replan"


def test_docs_controller_example_runs():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "regime.md").read_text()
    block = text.split("### Writing a controller")[1].split("```python")[1].split("```")[0]
    scope: dict = {}
    exec(block, scope)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctrl = scope["SlowDownWhenNoisy"](ratio=1.0)
    regime = Regime(opt, total_steps=10, preset="constant", controllers=[ctrl])
    for i in range(10):
        loss = loss_of(model, i) * (1 + 10 * (i % 3 == 2))  # noisy gradient every 3rd step
        loss.backward()
        regime.step(loss)
    assert any(e.source == "slow_down_when_noisy" for e in regime.events)
    assert regime.config()["controllers"] == [
        {"name": "slow_down_when_noisy", "params": {"ratio": 1.0, "beta": 0.98}}
    ]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_capturable_tensor_lr():
    model = make_model().cuda()
    lr = torch.tensor(0.01, device="cuda")
    opt = torch.optim.Adam(model.parameters(), lr=lr, capturable=True)
    regime = Regime(opt, total_steps=10, preset="cosine", clip_norm=1.0)
    for i in range(5):
        x, y = batch(i)
        loss = ((model(x.cuda()) - y.cuda()) ** 2).mean()
        loss.backward()
        assert regime.step(loss)
    assert opt.param_groups[0]["lr"] is lr
    assert lr.item() == pytest.approx(regime.values("group0")["lr"], rel=1e-6)


def test_warns_once_only_when_training_past_total_steps() -> None:
    import warnings

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    regime = cadence.Regime(torch.optim.SGD(model.parameters(), lr=0.01), total_steps=5,
                            preset="cosine")

    def steps(n: int) -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(n):
                loss = model(torch.randn(4, 3)).pow(2).mean()
                loss.backward()
                regime.step(loss)
        return [str(w.message) for w in seen if "total_steps" in str(w.message)]

    assert steps(5) == []  # a run of exactly its planned length is not warned about
    assert len(steps(3)) == 1 and regime.step_count == 8
