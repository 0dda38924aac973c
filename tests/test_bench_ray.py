"""The Ray executor: a two-run sweep through a local Ray instance into SQLite, then a
resume that reruns nothing (same rows and rule as the local pool)."""

from __future__ import annotations

import sys

import pytest

from cadence.bench.db import ResultsDB
from cadence.bench.runner import RunSpec, run_one, run_specs

ray = pytest.importorskip("ray")

SPECS = [RunSpec("quadratic", "adamw-cosine", 1e-2, seed, steps=20, eval_every=10)
         for seed in (0, 1)]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_sweep_on_ray_writes_the_local_rows_and_resumes(local_ray, tmp_path) -> None:
    db = ResultsDB(tmp_path / "ray.sqlite")
    first = run_specs(SPECS, db, workers=2, log=lambda *_: None, executor="ray")
    assert first["ok"] == 2 and first["error"] == 0 and len(db) == 2
    rows = {r["seed"]: r for r in db.rows()}
    assert set(rows) == {0, 1}
    for spec in SPECS:
        row = rows[spec.seed]
        assert row["run_key"] == spec.key() and row["status"] == "ok"
        assert len(row["curve"]) == 3 and row["steps"] == 20
        # a run is a pure function of its spec: Ray's row equals an in-process run's
        local = run_one(spec)
        assert row["final_metrics"] == pytest.approx(local["final_metrics"])
    created = {r["run_key"]: r["created"] for r in db.rows()}
    again = run_specs(SPECS, db, workers=2, log=lambda *_: None, executor="ray")
    assert again == {"ok": 0, "diverged": 0, "error": 0, "skipped": 2, "unavailable": 0}
    assert {r["run_key"]: r["created"] for r in db.rows()} == created and len(db) == 2


def test_the_cli_takes_the_ray_executor(local_ray, tmp_path, capsys) -> None:
    from cadence.bench import suites
    from cadence.cli import main

    suites.SUITES["ray-tiny"] = suites.Suite(
        "ray-tiny", (suites.Plan("quadratic", ("adamw-cosine",), seeds=(0,),
                                 grid_indices=(6,), steps=20),), refine_rounds=0)
    try:
        db = tmp_path / "cli.sqlite"
        args = ["bench", "--suite", "ray-tiny", "--db", str(db), "--executor", "ray"]
        assert main(args) == 0
        assert "ok 2" in capsys.readouterr().out  # the grid point and the default lr
        assert main(args) == 0
        assert "skipped 2" in capsys.readouterr().out
    finally:
        del suites.SUITES["ray-tiny"]


def test_a_missing_ray_is_named_with_its_extra(monkeypatch, tmp_path) -> None:
    from cadence.bench.executors import MissingExtra

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(MissingExtra, match=r"cadence\[ray\]"):
        run_specs(SPECS, ResultsDB(":memory:"), executor="ray", log=lambda *_: None)
    with pytest.raises(ValueError, match="executor"):
        run_specs(SPECS, ResultsDB(":memory:"), executor="dask", log=lambda *_: None)
