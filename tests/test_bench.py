"""cadence.bench: workloads, methods, runner, database, oracle, report (fast tests)."""

from __future__ import annotations

import math
import sqlite3

import pytest
import torch

from cadence.bench.db import SCHEMA_VERSION, ResultsDB
from cadence.bench.methods import METHODS, get_method
from cadence.bench.oracle import refinement_points, select_oracle
from cadence.bench.report import (
    analyse,
    bootstrap_ci,
    performance_profile,
    ratio,
    width_decades,
    write_report,
)
from cadence.bench.runner import RunSpec, run_one, run_specs
from cadence.bench.suites import Plan, Suite, get_suite, run_suite
from cadence.bench.workloads import WORKLOADS, get_workload

# ---------------------------------------------------------------- workloads


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_workload_builds_and_trains(name: str) -> None:
    w = get_workload(name)
    w.prepare()
    torch.manual_seed(0)
    model = w.make_model()
    before = [p.detach().clone() for p in model.parameters()]
    row = run_one(RunSpec(name, "adamw-constant", 1e-3, 0, steps=3, eval_every=3))
    assert row["status"] in ("ok", "diverged"), row.get("error")
    assert row["curve"][0]["step"] == 0 and math.isfinite(row["curve"][0]["train_loss"])
    if name != "stress-nan":  # that one injects a NaN loss at step 1 and must diverge
        assert row["curve"][-1]["step"] == 3
        assert math.isfinite(row["final_metrics"][f"test_{w.primary}"])
    # training moved the weights of a fresh model trained the same way
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for step in range(3):
        loss = w.loss(model, w.batch(step, gen))
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_splits_are_disjoint_and_sized() -> None:
    w = get_workload("mnist1d-mlp")
    w.prepare()
    assert w.data["train"][0].shape == (4000, 40)  # as published
    assert w.data["selection"][0].shape == (1000, 40)
    assert w.data["test"][0].shape == (10000, 40)
    d = get_workload("digits-cnn")
    d.prepare()
    n = sum(d.data[s][0].shape[0] for s in ("train", "selection", "test"))
    assert n == 1797


def test_batchnorm_recalibration_leaves_the_training_order_alone() -> None:
    """Schedule-free recalibrates BatchNorm between steps; its batches must not change the
    data order the other methods see for the same seed."""

    def order(recalibrate: bool) -> list[torch.Tensor]:
        w = get_workload("digits-cnn")
        w.prepare()
        assert 2 * (w.data["train"][0].shape[0] // w.batch_size) < 60  # spans 3 epochs
        model = w.make_model()
        gen = torch.Generator().manual_seed(0)
        out = []
        for step in range(60):
            if recalibrate and step % 7 == 3:
                w.recalibrate_batchnorm(model)
            out.append(w.batch(step, gen)[1])
        return out

    plain, recalibrated = order(False), order(True)
    assert all(torch.equal(a, b) for a, b in zip(plain, recalibrated, strict=True))


def test_charlm_corpus_is_deterministic_and_held_out() -> None:
    from cadence.bench.workloads.charlm import corpus_files, encode

    files = corpus_files()
    assert files["train"] and files["selection"] and files["test"]
    assert not set(files["train"]) & (set(files["selection"]) | set(files["test"]))
    assert files == corpus_files()
    ids = encode(b"\ta\n~\x00")
    assert ids.tolist() == [0, ord("a") - 30, 1, ord("~") - 30, 97]


def test_quadratic_optimum_is_known() -> None:
    w = get_workload("quadratic")
    x = torch.nn.Parameter(w.x_star.clone())
    assert w.f(x).item() == pytest.approx(0.0, abs=1e-10)
    eig = torch.linalg.eigvalsh(w.h.double())
    assert eig.min().item() == pytest.approx(1e-3, rel=1e-3)
    assert eig.max().item() == pytest.approx(1.0, rel=1e-3)


def test_logreg_optimum_beats_gradient_descent() -> None:
    w = get_workload("logreg")
    w.prepare()
    torch.manual_seed(0)
    model = w.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(100):  # full-batch GD never gets below the L-BFGS optimum
        loss = w.loss(model, (w.x, w.y))
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert w.evaluate(model, "test")["loss"] >= -1e-6


# ---------------------------------------------------------------- methods


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_a_few_steps(name: str) -> None:
    method = get_method(name)
    if method.missing():
        pytest.skip(method.missing())
    row = run_one(RunSpec("digits-cnn", name, method.default_lr, 0, steps=4, eval_every=2))
    assert row["status"] in ("ok", "diverged"), row.get("error")
    assert len(row["curve"]) == 3
    assert all(math.isfinite(p["lr"]) for p in row["curve"])


def test_schedulefree_evaluates_at_averaged_weights() -> None:
    pytest.importorskip("schedulefree")
    w = get_workload("quadratic")
    torch.manual_seed(0)
    model = w.make_model()
    from cadence.bench.methods import RunContext

    trainer = get_method("schedulefree-adamw").build(model, 1e-2, RunContext(total_steps=50))
    gen = torch.Generator().manual_seed(0)
    for step in range(20):
        w.loss(model, w.batch(step, gen)).backward()
        trainer.step(torch.tensor(0.0))
    y = model.x.detach().clone()
    trainer.eval_mode(model)
    x = model.x.detach().clone()
    state = trainer.optimizer.state[model.x]
    beta1 = trainer.optimizer.param_groups[0]["betas"][0]
    # y = (1-β1) z + β1 x  ⇒  x = (y - (1-β1) z) / β1
    assert torch.allclose(x, (y - (1 - beta1) * state["z"]) / beta1, atol=1e-5)
    trainer.train_mode(model)
    assert torch.allclose(model.x.detach(), y, atol=1e-5)


# ---------------------------------------------------------------- runner


def test_same_seed_same_init_and_data_across_methods() -> None:
    a = run_one(RunSpec("mnist1d-mlp", "adamw-cosine", 1e-3, 3, steps=2, eval_every=2))
    b = run_one(RunSpec("mnist1d-mlp", "sgd-cosine", 0.1, 3, steps=2, eval_every=2))
    c = run_one(RunSpec("mnist1d-mlp", "sgd-cosine", 0.1, 4, steps=2, eval_every=2))
    assert a["curve"][0]["test_loss"] == b["curve"][0]["test_loss"]
    assert b["curve"][0]["test_loss"] != c["curve"][0]["test_loss"]
    w = get_workload("mnist1d-mlp")
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(w.batch(0, g1)[1], get_workload("mnist1d-mlp").batch(0, g2)[1])


def test_divergence_is_recorded_not_raised() -> None:
    row = run_one(RunSpec("quadratic", "sgd-cosine", 1e3, 0, steps=200, eval_every=50))
    assert row["status"] == "diverged" and row["diverged"] == 1
    assert "non-finite" in row["error"]
    row = run_one(RunSpec("stress-nan", "adamw-constant", 1e-3, 0, steps=20, eval_every=10))
    assert row["status"] == "diverged"
    assert row["final_metrics"]["nan_in_weights"] > 0


def test_run_key_is_a_hash_of_the_config() -> None:
    s = RunSpec("quadratic", "adamw-cosine", 1e-3, 0, 10, 5)
    assert s.key() == RunSpec("quadratic", "adamw-cosine", 0.001, 0, 10, 5).key()
    assert s.key() != RunSpec("quadratic", "adamw-cosine", 1e-3, 1, 10, 5).key()
    assert s.key() != RunSpec("quadratic", "adamw-cosine", 1e-3, 0, 11, 5).key()


# ---------------------------------------------------------------- database


def test_db_round_trips_a_run(tmp_path) -> None:
    row = run_one(RunSpec("quadratic", "adamw-cosine", 1e-2, 0, steps=10, eval_every=5))
    row["final_metrics"]["weird"] = float("nan")
    path = tmp_path / "r.sqlite"
    with ResultsDB(path) as db:
        db.insert(row)
    with ResultsDB(path) as db:
        (back,) = db.rows()
        assert db.schema_version == SCHEMA_VERSION
        assert db.done_keys() == {row["run_key"]}
    assert back["final_metrics"]["weird"] is None
    for k in ("run_key", "workload", "method", "lr", "seed", "status", "config", "curve"):
        assert back[k] == row[k], k
    assert back["final_metrics"]["test_loss"] == row["final_metrics"]["test_loss"]


def test_db_refuses_newer_schema_and_bad_rows(tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    ResultsDB(path).close()
    with sqlite3.connect(path) as c:
        c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ValueError, match="schema_version"):
        ResultsDB(path)
    with pytest.raises(ValueError, match="missing"):
        ResultsDB(":memory:").insert({"run_key": "x"})


def test_resumed_suite_skips_finished_rows_and_report_renders(tmp_path) -> None:
    suite = Suite("tiny", (Plan("quadratic", ("adamw-cosine", "adamw-constant"), seeds=(0, 1),
                                grid_indices=(4, 6), steps=30),), refine_rounds=1)
    db = ResultsDB(tmp_path / "r.sqlite")
    first = run_suite(suite, db, workers=0, log=lambda *_: None)
    n = len(db)
    assert first["ok"] + first["diverged"] == n >= 8  # 2 methods × 2 lrs × 2 seeds + refinement
    again = run_suite(suite, db, workers=0, log=lambda *_: None)
    assert again["ok"] == again["diverged"] == again["error"] == 0
    assert again["skipped"] == n and len(db) == n
    md = write_report(db, tmp_path / "rep")
    text = md.read_text()
    assert "quadratic" in text and "Oracle (adamw-cosine)" in text
    assert (tmp_path / "rep" / "sensitivity_quadratic.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "performance_profile.png").exists()


def test_worker_processes_and_missing_methods(tmp_path) -> None:
    db = ResultsDB(tmp_path / "r.sqlite")
    specs = [RunSpec("rosenbrock", "adamw-cosine", 1e-2, s, 10, 5) for s in (0, 1)]
    messages: list[str] = []
    counts = run_specs(specs, db, workers=2, log=messages.append)
    assert counts["ok"] + counts["diverged"] == 2 and len(db) == 2
    rows = db.rows()
    assert {r["seed"] for r in rows} == {0, 1}
    assert all(r["peak_mem_mb"] >= 0 for r in rows)


def test_cli_report_and_list(tmp_path, capsys) -> None:
    from cadence.cli import main

    db = ResultsDB(tmp_path / "r.sqlite")
    run_specs([RunSpec("rosenbrock", "adamw-cosine", 1e-2, 0, 10, 5)], db, workers=0)
    db.close()
    assert main(["bench", "report", "--db", str(tmp_path / "r.sqlite"),
                 "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "report.md").exists()
    assert main(["bench", "list"]) == 0
    assert "mnist1d-cnn" in capsys.readouterr().out
    assert main(["bench", "--suite", "nope", "--db", str(tmp_path / "x.sqlite")]) == 2


def test_cli_overhead_and_gpu_check_their_arguments(monkeypatch, capsys) -> None:
    """Each action validates its own options (a check of one it lacks must not crash it)."""
    import cadence.bench.gpu as gpu
    import cadence.bench.overhead as overhead
    from cadence.cli import main

    seen: dict[str, dict] = {}

    def fake_overhead(**kw: object) -> list:
        seen["o"] = kw
        return []

    def fake_gpu(**kw: object) -> int:
        seen["g"] = kw
        return 0

    monkeypatch.setattr(overhead, "measure_overhead", fake_overhead)
    monkeypatch.setattr(gpu, "run_gpu", fake_gpu)
    assert main(["bench", "overhead", "--repeats", "2", "--steps", "1"]) == 0
    assert seen["o"]["repeats"] == 2 and seen["o"]["steps"] == 1
    assert main(["bench", "gpu", "--block", "5"]) == 0 and seen["g"]["block"] == 5
    assert main(["bench", "gpu", "--block", "0"]) == 2
    assert "--block must be >= 1" in capsys.readouterr().err


def test_seeds_option_reruns_every_plan_over_the_given_seeds(tmp_path) -> None:
    from cadence.cli import main

    suite = get_suite("long").with_seeds([2, 0, 2])
    assert {p.seeds for p in suite.plans} == {(0, 2)}
    db_path = tmp_path / "s.sqlite"
    assert main(["bench", "--suite", "quick", "--workloads", "quadratic", "--methods",
                 "adamw-constant", "--seeds", "3", "--db", str(db_path), "--workers", "0"]) == 0
    with ResultsDB(db_path) as db:
        assert {r["seed"] for r in db.rows()} == {3}
    assert main(["bench", "--seeds", "-1", "--db", str(tmp_path / "x.sqlite")]) == 2


# ---------------------------------------------------------------- oracle and report maths


def _row(method: str, lr: float, seed: int, sel: float, test: float, status: str = "ok") -> dict:
    return {
        "workload": "w", "method": method, "lr": lr, "seed": seed, "status": status,
        "config": {"primary": "acc", "higher_is_better": True},
        "final_metrics": {"selection_acc": sel, "test_acc": test},
        "curve": [{"step": 0, "selection_acc": 0.1}, {"step": 10, "selection_acc": sel}],
    }


def test_oracle_selects_on_selection_split_with_divergence_worst() -> None:
    rows = [
        _row("adamw-cosine", 1e-3, 0, 0.60, 0.90), _row("adamw-cosine", 1e-3, 1, 0.62, 0.90),
        _row("adamw-cosine", 1e-2, 0, 0.70, 0.50), _row("adamw-cosine", 1e-2, 1, 0.71, 0.50),
        _row("adamw-cosine", 1e-1, 0, 0.99, 0.99, "diverged"),
        _row("adamw-cosine", 1e-1, 1, 0.99, 0.99, "diverged"),
    ]
    o = select_oracle(rows)
    assert o["lr"] == 1e-2  # best selection median, although its test value is worse
    assert o["selection"] == pytest.approx(0.705) and o["test"] == pytest.approx(0.50)
    # refined ×2 around the winner of a one-decade grid: 10^±0.5 neighbours
    pts = refinement_points(rows, spacing=1.0)
    assert pts == pytest.approx([1e-2 / 10**0.5, 1e-2 * 10**0.5])
    # winner on the lower edge ⇒ extend the grid downwards
    edge = [_row("adamw-cosine", 1e-3, 0, 0.9, 0.9), _row("adamw-cosine", 1e-2, 0, 0.5, 0.5)]
    assert refinement_points(edge, spacing=1.0) == pytest.approx([1e-4])


def test_a_workload_at_two_budgets_is_analysed_as_two() -> None:
    """The long suite's 1,600-step charlm shares the workload name with the standard
    400-step one: each budget gets its own oracle (the most-run budget keeps the name)."""
    short = [_row("adamw-cosine", lr, s, sel, sel) for lr, sel in ((1e-3, 0.6), (1e-2, 0.7))
             for s in (0, 1)]
    long = [_row("adamw-cosine", lr, 0, sel, sel) for lr, sel in ((1e-3, 0.9), (1e-2, 0.8))]
    for r in short:
        r["steps"] = 400
    for r in long:
        r["steps"] = 1600
    a = analyse(short + long)
    assert sorted(a) == ["w", "w@1600"]
    assert a["w"]["oracle"]["lr"] == 1e-2 and a["w@1600"]["oracle"]["lr"] == 1e-3
    assert a["w"]["oracle"]["test"] == pytest.approx(0.7)


def test_width_ratio_bootstrap_and_profile_by_hand() -> None:
    oracle = 0.70
    pts = {1e-4: 0.40, 1e-3: 0.69, 1e-2: 0.71, 1e-1: 0.686, 1.0: 0.30}
    # within 2 %: 1e-3, 1e-2, 1e-1 (0.686 = 0.98·0.70) → 2 decades + half a cell each side
    assert width_decades(pts, oracle, True) == pytest.approx(3.0)
    assert width_decades({1e-3: 0.5}, oracle, True) == 0.0
    assert ratio(0.35, 0.70, True) == pytest.approx(0.5)
    assert ratio(2.0, 1.0, False) == pytest.approx(0.5)  # losses: oracle / method
    assert ratio(math.inf, 1.0, False) == 0.0
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert 1.0 <= lo <= 3.0 <= hi <= 5.0
    analysis = {"w": {"methods": {
        "a": {"stt_by_seed": {0: 100.0, 1: 200.0}},
        "adamw-cosine": {"stt_by_seed": {0: 200.0, 1: math.inf}},
    }}}
    prof = performance_profile(analysis)
    assert prof["a"]["rho1"] == 1.0 and prof["a"]["B"] == pytest.approx(1.0)
    assert prof["adamw-cosine"]["rho1"] == 0.0 and prof["adamw-cosine"]["rho2"] == 0.5
    assert prof["a"]["speedup"] == pytest.approx(2.0)  # 200 / 100 on the one shared problem


def test_overhead_runs_interleaved_with_a_control() -> None:
    from cadence.bench.overhead import format_overhead, measure_overhead

    res = measure_overhead(presets=["auto"], workloads=["quadratic"], repeats=2, steps=2,
                           warmup=1, log=lambda *_: None)
    assert [r.preset for r in res] == ["control", "grad-norm", "auto"]
    assert all(r.bare_ms > 0 and r.cadence_ms > 0 and r.ratio_median > 0 for r in res)
    assert res[0].extra_state_mb == 0.0 and res[0].extra_forwards_per_step == 0.0
    assert "| quadratic | auto |" in format_overhead(res)
    with pytest.raises(ValueError, match="repeats"):
        measure_overhead(repeats=1)


def test_a_method_that_raises_mid_run_is_a_failure_not_a_crash(monkeypatch) -> None:
    from cadence.bench.methods import torch_peers

    class Boom(torch_peers.ScheduledTrainer):
        calls = 0

        def step(self, loss: torch.Tensor) -> None:
            if self.calls == 3:
                raise RuntimeError("guard gave up")
            self.calls += 1
            super().step(loss)

    def build(model, lr, ctx):
        return Boom(torch.optim.AdamW(model.parameters(), lr=lr))

    monkeypatch.setattr(get_method("adamw-constant"), "build", build)
    row = run_one(RunSpec("quadratic", "adamw-constant", 1e-2, 0, steps=10, eval_every=5))
    assert row["status"] == "diverged"
    assert "step 3" in row["error"] and "guard gave up" in row["error"]
