"""The Regime's seams: knobs as the only writer, the two-phase form, host transfers, config."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

import cadence
from cadence.controllers.clara import ClaraController
from cadence.controllers.momentum import MomentumControl
from cadence.optim import ClaraAdam, ClaraSGD, SALeRA
from cadence.regime import Regime
from cadence.signals.trend import LossTrend

SRC = Path(__file__).parents[1] / "src" / "cadence"


def make(preset: str = "cosine", opt_cls=torch.optim.SGD, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    extra = {"momentum": 0.9} if opt_cls is torch.optim.SGD else {}
    opt = opt_cls(cadence.param_groups(model, lr=0.05, weight_decay=0.01), **extra)
    return model, opt, Regime(opt, total_steps=40, preset=preset, **kwargs)


def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(i)
    x = torch.randn(32, 6, generator=g)
    return x, x.sum(1, keepdim=True)


def loss_of(model: torch.nn.Module, i: int) -> torch.Tensor:
    x, y = batch(i)
    return ((model(x) - y) ** 2).mean()


def test_values_are_read_back_from_the_groups_not_a_shadow_copy() -> None:
    model, opt, regime = make()
    for i in range(3):
        loss = loss_of(model, i)
        loss.backward()
        regime.step(loss)
    group = opt.param_groups[0]
    name = regime.group_names[0]
    group["weight_decay"] = 0.5
    group["momentum"] = 0.7
    assert regime.values(name)["weight_decay"] == 0.5
    assert regime.values(name)["momentum"] == 0.7
    assert regime.state_dict()["knobs"]["values"][name]["weight_decay"] == 0.5


def test_two_phase_form_matches_step_and_patches_nothing() -> None:
    stepped_model, _, stepped = make(preset="auto")
    model, opt, regime = make(preset="auto")
    for i in range(25):
        loss = loss_of(stepped_model, i)
        loss.backward()
        stepped.step(loss)
        loss = loss_of(model, i)
        loss.backward()
        if regime.decide(loss):
            opt.step()
            regime.finish()
        opt.zero_grad(set_to_none=True)
    assert "step" not in vars(opt) and "zero_grad" not in vars(opt)
    for a, b in zip(stepped_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert regime.values() == stepped.values()
    assert [e.to_dict() for e in regime.events] == [e.to_dict() for e in stepped.events]


def test_decide_drops_the_gradients_of_a_skipped_step() -> None:
    model, opt, regime = make()
    before = [p.detach().clone() for p in model.parameters()]
    loss = loss_of(model, 0) * float("nan")
    loss.backward()
    assert regime.decide(loss) is False
    assert all(p.grad is None for p in model.parameters())
    opt.step()  # what a trainer does next: changes nothing
    regime.finish()  # nothing was decided: not counted
    assert regime.step_count == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("preset", ["constant", "cosine", "plateau", "auto"])
def test_one_host_transfer_per_step(preset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loss, the gradient norm (shared by guard and clipping) and the due signals'
    inputs reach the host in one transfer; nothing else syncs (SGD itself never does)."""
    model, _, regime = make(preset=preset, clip_norm=1.0)
    counts: Counter[str] = Counter()
    for method in ("item", "tolist", "cpu", "numpy", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, method)

        def counted(self, *a, _original=original, _method=method, **k):
            counts[_method] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, method, counted)
    per_step = []
    for i in range(30):
        loss = loss_of(model, i)
        loss.backward()
        before = sum(counts.values())
        regime.step(loss)
        per_step.append(sum(counts.values()) - before)
    monkeypatch.undo()
    assert per_step == [1] * 30, (per_step, counts)


def test_config_json_rebuilds_every_argument_of_the_users_parts(tmp_path: Path) -> None:
    _, opt, regime = make(
        preset="constant",
        controllers=[MomentumControl(patience=7), ClaraController(c=0.3, name="clara_b")],
        signals=[LossTrend(window=10)],
        log_dir=tmp_path / "run",
    )
    regime.close()
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    params = {c["name"]: c["params"] for c in recorded["controllers"]}
    assert params["momentum"]["patience"] == 7
    assert params["clara"]["c"] == 0.3 and params["clara"]["name"] == "clara_b"
    _, opt2, _ = make(preset="constant")
    rebuilt = Regime.from_config(opt2, tmp_path / "run" / "config.json")
    assert [c.get_config() for c in rebuilt._user_controllers] == [
        c.get_config() for c in regime._user_controllers
    ]
    assert [s.get_config() for s in rebuilt._user_signals] == [{
        **LossTrend(window=10).get_config()
    }]
    assert rebuilt._user_signals[0].get_config()["window"] == 10


def test_only_knobs_and_the_drop_in_optimizers_write_param_groups() -> None:
    """DESIGN: one writer of hyper-parameters. Any ``group[...] = `` or in-place fill on
    a param group outside regime/knobs.py and optim/ is a second writer."""
    write = re.compile(r"\b(g|group|grp|pg|param_group)\[[^]]+\]\s*=[^=]|\.fill_\(")
    allowed = {SRC / "regime" / "knobs.py"} | set((SRC / "optim").rglob("*.py"))
    offenders = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in SRC.rglob("*.py") if path not in allowed
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if write.search(line)
    ]
    assert not offenders, "writes into param_groups outside knobs.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_a_schedule_value_that_cannot_be_an_lr_is_refused_before_it_is_applied(bad) -> None:
    model, opt, regime = make(preset="constant", schedule=lambda step: 1.0 if step < 3 else bad)
    with pytest.raises(ValueError, match=r"lr schedule of group .* at step 3.*finite number >= 0"):
        for i in range(5):
            loss = loss_of(model, i)
            loss.backward()
            regime.step(loss)
    assert regime.step_count == 3  # raised when the lr of update 3 was to be written
    assert all(math.isfinite(g["lr"]) and g["lr"] >= 0 for g in opt.param_groups)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_an_lr_set_outside_the_regime_becomes_the_new_base_with_one_warning() -> None:
    model, opt, regime = make(preset="cosine")
    for i in range(5):
        loss = loss_of(model, i)
        loss.backward()
        regime.step(loss)
    name = regime.group_names[0]
    sched, mult = regime.knobs.schedule(name, 5), regime.knobs.multiplier(name)
    opt.param_groups[0]["lr"] = 0.02  # a hand edit between two steps
    loss = loss_of(model, 5)
    loss.backward()
    with pytest.warns(UserWarning, match="outside the regime"):
        regime.step(loss)
    outside = [e for e in regime.events if e.source == "outside"]
    assert len(outside) == 1 and outside[0].group == name and outside[0].new == 0.02
    assert regime.knobs.base(name, "lr") == pytest.approx(0.02 / (sched * mult))
    # the schedule carries on from the user's value: lr(6) = 0.02 * s(6) / s(5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02 * regime.knobs.schedule(name, 6)
                                                      / sched)


def test_a_torch_scheduler_on_the_same_optimizer_is_noticed_and_warned_once() -> None:
    model, opt, regime = make(preset="constant")
    torch_sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    with pytest.warns(UserWarning, match="LRScheduler on the same optimizer") as caught:
        for i in range(8):
            loss = loss_of(model, i)
            loss.backward()
            regime.step(loss)
            torch_sched.step()
    assert len([w for w in caught if "outside the regime" in str(w.message)]) == len(
        regime.group_names)  # once per group
    adopted = [e for e in regime.events if e.source == "outside"]
    assert len(adopted) == 3 * len(regime.group_names)  # StepLR halved it at 2, 4 and 6
    assert all(e.new == pytest.approx(0.5 * e.old) for e in adopted)


def test_reaching_total_steps_warns_once_and_points_to_replan() -> None:
    model, _, regime = make(preset="cosine")  # total_steps=40
    with pytest.warns(UserWarning, match=r"total_steps=40.*replan") as caught:
        for i in range(45):
            loss = loss_of(model, i)
            loss.backward()
            regime.step(loss)
    assert sum("total_steps=40" in str(w.message) for w in caught) == 1


def test_an_lr_change_while_the_warmup_is_at_zero_reads_as_the_peak_it_moves() -> None:
    """At a warmup's first step the effective lr is 0, so 'lr 0 -> 0' said nothing; the
    event gives the lr before the schedule instead, and says so."""
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)  # far below auto's scale rule
    regime = Regime(opt, total_steps=200)  # auto: warmup from 0 and the scale-aware start
    loss = loss_of(model, 0)
    loss.backward()
    regime.step(loss)
    scale = [e for e in regime.events if e.source == "scale"]
    assert scale and scale[0].step == 0 and scale[0].old == pytest.approx(1e-5)
    assert scale[0].new > scale[0].old and "the schedule is at 0" in scale[0].reason


@pytest.mark.parametrize("kind", [ClaraSGD, ClaraAdam, SALeRA])
def test_a_drop_in_optimizer_that_adapts_its_own_lr_is_refused(kind: type) -> None:
    """Under a Regime a ClaraSGD's adaptation would be erased every step (0.01 stays 0.01
    where bare ClaraSGD goes to 0.63 in 50 steps): refused, naming the Regime form."""
    opt = kind(torch.nn.Linear(3, 1).parameters(), lr=0.01)
    with pytest.raises(ValueError, match=r"adapts its own learning rate.*(preset='clara'|"
                                         r"controllers=\['salera'\])"):
        cadence.Regime(opt, total_steps=10)
