"""The tabular-overfit, finetune and sbm-gcn bench workloads (fast: short runs only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import cadence
from cadence.bench.methods import RunContext, get_method
from cadence.bench.runner import RunSpec, run_one
from cadence.bench.workloads import finetune as finetune_module
from cadence.bench.workloads import get_workload
from cadence.bench.workloads.base import cache_dir

NEW = ("tabular-overfit", "finetune", "sbm-gcn")
LR = {"tabular-overfit": 1e-3, "finetune": 1e-2, "sbm-gcn": 1e-2}


def _train(w: Any, model: torch.nn.Module, lr: float, steps: int) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    for step in range(steps):
        w.loss(model, w.batch(step, gen)).backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("name", NEW)
def test_training_lowers_the_loss(name: str) -> None:
    w = get_workload(name)
    w.prepare()
    torch.manual_seed(0)
    model = w.make_model()
    before = w.evaluate(model, "train")
    _train(w, model, LR[name], 30)
    after = w.evaluate(model, "train")
    assert set(before) >= {"loss", w.primary}
    assert after["loss"] < 0.9 * before["loss"]


def test_tabular_overfit_splits_are_standardised_and_disjoint() -> None:
    w = get_workload("tabular-overfit")
    w.prepare()
    sizes = {s: w.data[s][0].shape for s in ("train", "selection", "test")}
    assert sizes == {"train": (242, 10), "selection": (100, 10), "test": (100, 10)}
    x, y = w.data["train"]
    assert torch.allclose(x.mean(0), torch.zeros(10), atol=1e-5)
    assert abs(y.mean().item()) < 1e-5 and abs(y.std(unbiased=False).item() - 1) < 1e-4
    rows = [{tuple(r.tolist()) for r in w.data[s][0]} for s in ("train", "selection", "test")]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    ev = w.evaluate(w.make_model(), "test")
    assert ev["mse"] == ev["loss"] and not w.higher_is_better and w.primary == "mse"


def test_sbm_graph_is_fixed_and_splits_are_disjoint() -> None:
    from cadence.bench.workloads.graph import COMMUNITIES, NODES, make_sbm

    a, b = make_sbm(), make_sbm()
    assert all(np.array_equal(a[k], b[k]) for k in a)  # generated the same way every time
    nodes = [set(a[s].tolist()) for s in ("train", "selection", "test")]
    assert [len(n) for n in nodes] == [100, 500, 900]
    assert not (nodes[0] & nodes[1] or nodes[0] & nodes[2] or nodes[1] & nodes[2])
    assert np.bincount(a["y"][a["train"]]).tolist() == [20] * COMMUNITIES
    w = get_workload("sbm-gcn")
    w.prepare()
    adj = w.adj.to_dense()
    assert adj.shape == (NODES, NODES) and torch.allclose(adj, adj.T)
    # D^-1/2 (A + I) D^-1/2 has spectral radius 1 (eigenvector D^1/2 · 1)
    assert torch.linalg.eigvalsh(adj).max().item() == pytest.approx(1.0, abs=1e-4)


def test_finetune_body_is_the_cached_pretrained_one() -> None:
    w = get_workload("finetune")
    w.prepare()
    assert w.pretrain_acc is not None and w.pretrain_acc > 0.9  # digits 0-4, held out
    state, _ = finetune_module.pretrained_body()
    torch.manual_seed(0)
    model = w.make_model()
    body = model.body.state_dict()
    assert body.keys() == state.keys()
    assert all(torch.equal(body[k], state[k]) for k in state)
    torch.manual_seed(1)
    other = w.make_model()  # another seed: same body, another fresh head
    assert all(torch.equal(other.body.state_dict()[k], state[k]) for k in state)
    assert not torch.equal(other.head.weight, model.head.weight)
    assert model.head.out_features == 5
    assert list(cache_dir().glob("finetune-body-*.npz"))


def test_finetune_prepare_reuses_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    get_workload("finetune").prepare()  # pretrained (or loaded) once

    def no_pretraining() -> dict[str, np.ndarray]:
        raise AssertionError("pretrained again instead of loading the cached body")

    monkeypatch.setattr(finetune_module, "_pretrain", no_pretraining)
    w = get_workload("finetune")
    w.prepare()
    assert w.body_state is not None


def test_pretrained_body_beats_a_random_one_after_a_few_steps() -> None:
    w = get_workload("finetune")
    w.prepare()
    accs = {}
    for pretrained in (True, False):
        torch.manual_seed(0)
        model = w.make_model()
        if not pretrained:
            for m in model.body.modules():
                if isinstance(m, torch.nn.Conv1d):
                    m.reset_parameters()
        _train(w, model, 1e-2, 30)
        accs[pretrained] = w.evaluate(model, "selection")["acc"]
    # measured: 0.68 pretrained vs 0.41 random; chance is 0.2
    assert accs[True] > 0.5 and accs[True] > accs[False] + 0.15, accs


def test_finetune_groups_reach_cadence_param_groups() -> None:
    w = get_workload("finetune")
    w.prepare()
    torch.manual_seed(0)
    model = w.make_model()
    spec = w.param_group_spec
    groups = cadence.param_groups(model, lr=1e-3, weight_decay=0.01, groups=spec)
    names = {g["name"] for g in groups}
    assert names == {"head.decay", "head.no_decay", "body.decay", "body.no_decay"}
    body = {id(p) for p in model.body.parameters()}
    for g in groups:
        in_body = {id(p) in body for p in g["params"]}
        assert in_body == {g["name"].startswith(w.pretrained_groups[0])}
        assert g.get("pretrained", False) is g["name"].startswith("body")
    # the cadence arm builds the same groups from the run context; peers keep one group
    ctx = RunContext(total_steps=10, param_group_spec=spec)
    trainer = get_method("cadence-cosine").build(model, 1e-3, ctx)
    assert {g["name"] for g in trainer.optimizer.param_groups} == names
    peer = get_method("adamw-cosine").build(model, 1e-3, ctx)
    assert len(peer.optimizer.param_groups) == 1


@pytest.mark.parametrize("method", ["adamw-cosine", "cadence-auto"])
@pytest.mark.parametrize("name", NEW)
def test_runner_runs_the_new_workloads(name: str, method: str) -> None:
    row = run_one(RunSpec(name, method, LR[name], 0, steps=20, eval_every=10))
    assert row["status"] == "ok", row.get("error")
    assert [p["step"] for p in row["curve"]] == [0, 10, 20]
    primary = get_workload(name).primary
    assert np.isfinite(row["final_metrics"][f"test_{primary}"])
