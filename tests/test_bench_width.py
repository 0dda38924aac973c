"""The width study: its suite, and its report (table + plot) from a synthetic database."""

from __future__ import annotations

import math

import pytest

from cadence.bench.db import ResultsDB
from cadence.bench.oracle import refinement_points
from cadence.bench.suites import (
    FULL_GRID,
    WIDTHS,
    Plan,
    Suite,
    get_suite,
    missing_widths,
    run_suite,
)
from cadence.bench.width import predicted_lr, width_of, width_table, write_width_report
from cadence.bench.workloads import WORKLOADS

#: per width: the oracle's selection accuracy by lr (the best is the planted tuned lr)
PLANTED = {64: 1e-2, 256: 10**-2.5, 512: 1e-3}


def _row(width: int, method: str, lr: float, seed: int, sel: float, test: float,
         status: str = "ok") -> dict:
    wl = f"mnist1d-mlp-w{width}"
    return {
        "run_key": f"{wl}-{method}-{lr:.6g}-{seed}", "workload": wl, "method": method,
        "lr": lr, "seed": seed, "steps": 100, "status": status,
        "config": {"primary": "acc", "higher_is_better": True, "width": width},
        "final_metrics": {"selection_acc": sel, "test_acc": test},
    }


def _database(path) -> ResultsDB:
    db = ResultsDB(path)
    for width, best in PLANTED.items():
        for k in range(-10, 1):
            lr = 10 ** (k / 2)
            gap = abs(math.log10(lr / best))
            for seed in (0, 1, 2):
                acc = 0.7 - 0.1 * gap + 0.001 * seed
                status = "diverged" if lr >= 0.3 else "ok"
                db.insert(_row(width, "adamw-cosine", lr, seed, acc, acc - 0.01, status))
        for seed, q in zip((0, 1, 2), (0.60, 0.66, 0.0), strict=True):
            db.insert(_row(width, "cadence-auto", 1e-3, seed, q, q,
                           "ok" if q else "diverged"))
        db.insert(_row(width, "cadence-auto", 1e-2, 0, 0.9, 0.9))  # not the default start
    db.insert({**_row(64, "adamw-cosine", 1e-3, 0, 0.7, 0.7), "workload": "mnist1d-mlp",
               "run_key": "not-a-width-run"})
    return db


def test_predicted_lr_is_the_scale_rule_and_falls_with_width() -> None:
    pred = {w: predicted_lr(w) for w in (64, 128, 1024)}
    for w, p in pred.items():
        n = 40 * w + w + w * w + w + 10 * w + 10  # the MLP 40-w-w-10
        assert p["num_params"] == n
        assert p["rule"] == pytest.approx(0.5 / math.sqrt(n / 12))
        assert p["mup"] == pytest.approx(0.5 / w)  # median fan-in of the hidden matrices
    assert pred[64]["rule"] > pred[128]["rule"] > pred[1024]["rule"]
    assert width_of("mnist1d-mlp-w512") == 512 and width_of("mnist1d-mlp") is None


def test_width_table_from_a_synthetic_database(tmp_path) -> None:
    db = _database(tmp_path / "w.sqlite")
    table = width_table(db.rows())
    assert [t["width"] for t in table] == [64, 256, 512]
    for t in table:
        best = PLANTED[t["width"]]
        assert t["tuned_lr"] == pytest.approx(best)
        assert t["predicted_lr"] == pytest.approx(predicted_lr(t["width"])["rule"])
        assert t["ratio"] == pytest.approx(t["predicted_lr"] / best)
        assert t["oracle_q"] == pytest.approx(0.7 + 0.001 - 0.01)  # median seed, test split
        assert t["auto_q"] == pytest.approx(0.60)  # median of 0.60, 0.66 and a diverged 0
        assert t["auto_runs"] == 3 and t["oracle_runs"] == 33
    md = write_width_report(db, tmp_path / "out")
    text = md.read_text()
    assert "| width | params | predicted lr |" in text and "| 256 |" in text
    assert "ratio" in text and "![predicted vs tuned lr](width_lr.png)" in text
    assert (tmp_path / "out" / "width_lr.png").stat().st_size > 1000


def test_width_report_cli_and_an_empty_database(tmp_path, capsys) -> None:
    from cadence.cli import main

    _database(tmp_path / "w.sqlite").close()
    assert main(["bench", "width-report", "--db", str(tmp_path / "w.sqlite"),
                 "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "width.md").exists() and (tmp_path / "o" / "width_lr.png").exists()
    ResultsDB(tmp_path / "empty.sqlite").close()
    assert main(["bench", "width-report", "--db", str(tmp_path / "empty.sqlite"),
                 "--out", str(tmp_path / "e")]) == 0
    assert "suite width" in (tmp_path / "e" / "width.md").read_text()
    assert main(["bench", "width-report", "--db", str(tmp_path / "nope.sqlite")]) == 2


def test_the_width_suite_sweeps_the_oracle_and_starts_auto_at_its_default() -> None:
    suite = get_suite("width")
    have = [w for w in WIDTHS if f"mnist1d-mlp-w{w}" in WORKLOADS]
    assert missing_widths() == [w for w in WIDTHS if w not in have]
    assert {p.workload for p in suite.plans} == {f"mnist1d-mlp-w{w}" for w in have}
    for p in suite.plans:
        specs = p.specs()
        if p.methods == ("adamw-cosine",):
            assert p.grid_indices == FULL_GRID and len({s.lr for s in specs}) == 11
        else:
            assert p.methods == ("cadence-auto",) and {s.lr for s in specs} == {1e-3}
        assert {s.seed for s in specs} == {0, 1, 2}


def test_refinement_works_with_two_plans_for_one_workload(tmp_path) -> None:
    suite = Suite("two", (
        Plan("quadratic", ("adamw-cosine",), seeds=(0,), grid_indices=(4, 6), steps=20),
        Plan("quadratic", ("adamw-constant",), seeds=(0,), grid_indices=(), steps=20),
    ), refine_rounds=1)
    db = ResultsDB(tmp_path / "r.sqlite")
    run_suite(suite, db, workers=0, log=lambda *_: None)
    rows = db.rows(method="adamw-cosine")
    grid = [r for r in rows if r["lr"] in (1e-3, 1e-2)]
    assert len(grid) == 2
    # refined around the winner of the oracle plan's grid, not of the other plan's lrs
    assert {r["lr"] for r in rows} - {1e-3, 1e-2} == set(refinement_points(grid, 1.0))
    assert {r["lr"] for r in db.rows(method="adamw-constant")} == {1e-3}
