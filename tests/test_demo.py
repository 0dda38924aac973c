"""``cadence demo`` end to end, in-process, on a short budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("mnist1d", reason="the demo's workload needs the [bench] extra (mnist1d)")

from cadence.cli import main  # noqa: E402

STEPS, LR = 40, 3e-4


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "run"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--steps", str(STEPS), "--lr", str(LR), "--out", str(out)])
    assert code == 0, buf.getvalue()
    return out, buf.getvalue()


def test_demo_prints_the_table_and_the_dashboard_path(demo_run: tuple[Path, str]) -> None:
    out, text = demo_run
    for label in ("test acc", "final train loss", "events by source", "wall time",
                  "AdamW + warmup/cosine", "cadence auto"):
        assert label in text
    assert f"Dashboard: {(out / 'dashboard.html').resolve()}" in text
    page = (out / "dashboard.html").read_text()
    assert "Plotly.newPlot(" in page and "baseline" in page and "cadence" in page


def test_demo_writes_both_run_folders(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    for arm in ("baseline", "cadence"):
        for name in ("config.json", "events.jsonl", "metrics.jsonl"):
            assert (out / arm / name).exists(), (arm, name)
    cfg = json.loads((out / "cadence" / "config.json").read_text())
    assert cfg["preset"] == "auto" and cfg["total_steps"] == STEPS
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["lr"] == LR
    arms = {a["name"]: a for a in summary["arms"]}
    assert set(arms) == {"baseline", "cadence"}
    for arm in arms.values():
        assert 0.0 <= arm["test_metric"] <= 1.0 and math.isfinite(arm["train_loss"])
        assert arm["wall_time_s"] > 0
    # the events counted in the table are the ones in the cadence arm's events.jsonl
    events = _lines(out / "cadence" / "events.jsonl")
    assert sum(arms["cadence"]["events_by_source"].values()) == len(events)


def test_baseline_arm_follows_warmup_cosine(demo_run: tuple[Path, str]) -> None:
    """The plain arm's logged lr is the closed-form linear warmup + cosine at the start lr."""
    out, _ = demo_run
    warmup = max(1, round(0.05 * STEPS))

    def expected(step: int) -> float:
        if step < warmup:
            return LR * step / warmup
        return LR * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (STEPS - warmup)))

    rows = [r for r in _lines(out / "baseline" / "metrics.jsonl") if "metrics" not in r]
    assert [r["step"] for r in rows] == list(range(10, STEPS + 1, 10))
    for r in rows:
        for group in r["values"].values():
            assert group["lr"] == pytest.approx(expected(r["step"]), rel=1e-9, abs=1e-15)
    observed = [r for r in _lines(out / "baseline" / "metrics.jsonl") if "metrics" in r]
    assert observed and {"val_loss", "val_acc"} <= set(observed[-1]["metrics"])


def test_demo_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--lr", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "lr must be a finite number > 0, got -1" in capsys.readouterr().out
    assert main(["demo", "--workload", "nope", "--out", str(tmp_path / "y")]) == 2
    assert "unknown workload 'nope'" in capsys.readouterr().out
