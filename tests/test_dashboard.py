"""The run dashboard: reading run folders (docs/formats.md) and the HTML built from them.

Run folders are written here by hand, line by line, following docs/formats.md, so the
dashboard is tested against the documented format rather than against the Regime's code.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("plotly", reason="the dashboard needs the [report] extra (plotly)")

from cadence.cli import main  # noqa: E402
from cadence.report import load_run, render_dashboard  # noqa: E402
from cadence.report.dashboard import _Colours, _knobs_figure, _loss_figure  # noqa: E402
from cadence.report.run import RunData  # noqa: E402

GROUPS = ("body", "head")


def synthetic_lr(step: int, group: str, total: int = 200) -> float:
    """Warmup (20 steps) then cosine, head at 10x the body, halved at step 100 (the event)."""
    base = 1e-3 if group == "body" else 1e-2
    warm = min(1.0, (step + 1) / 20)
    cos = 0.5 * (1 + math.cos(math.pi * step / total))
    return base * warm * cos * (0.5 if step >= 100 else 1.0)


def write_synthetic_run(folder: Path, *, preset: str = "auto", total: int = 200,
                        truncated_tail: bool = False) -> Path:
    """A run folder as a Regime with two groups would write it (docs/formats.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "preset": preset, "total_steps": total,
        "controllers": [{"name": "plateau", "params": {"patience": 10}},
                        {"name": "guard", "params": {}}],
        "schedule": {"kind": "warmup_cosine", "warmup_steps": 20},
        "bounds": {"lr": [1e-6, 1.0]},
        "optimizer": {"class": "AdamW", "defaults": {"lr": 1e-3}},
        "groups": [{"name": g, "num_params": 100, "depth": i, "base": {"lr": 1e-3}}
                   for i, g in enumerate(GROUPS)],
        "cadence_version": "0.1.0", "started": "2026-01-01T00:00:00",
    }
    (folder / "config.json").write_text(json.dumps(config))
    events = [
        {"step": 100, "group": g, "knob": "lr", "old": synthetic_lr(99, g),
         "new": synthetic_lr(100, g), "source": "plateau",
         "reason": f"loss flat for 10 steps ({g})", "signals": {"loss_slope": -1e-5},
         "kind": "change"}
        for g in GROUPS
    ] + [
        {"step": 120, "group": None, "knob": None, "old": None, "new": None, "source": "guard",
         "reason": "non-finite loss: skipped the update", "signals": {"loss": float("nan")},
         "kind": "skip"},
        {"step": 150, "group": None, "knob": None, "old": None, "new": None, "source": "guard",
         "reason": "loss spike 8.0x the EMA: restored snapshot of step 140",
         "signals": {"loss_ratio": 8.0}, "kind": "rollback"},
    ]
    with (folder / "events.jsonl").open("w") as fh:
        for e in events:
            fh.write(json.dumps(e) + "\n")
    with (folder / "metrics.jsonl").open("w") as fh:
        for step in range(0, total, 5):
            row = {
                "step": step, "time": 1000.0 + 0.1 * step, "loss": 2.0 * math.exp(-step / 80),
                "values": {g: {"lr": synthetic_lr(step, g), "weight_decay": 0.1} for g in GROUPS},
                "signals": {"loss_slope": -0.01 / (1 + step), "grad_norm": 1.0 + step / 100},
            }
            if step % 50 == 0:
                row["metrics"] = {"val_loss": 2.1 * math.exp(-step / 90), "val_acc": step / total}
            fh.write(json.dumps(row) + "\n")
        if truncated_tail:
            fh.write('{"step": 200, "time": 10')  # a crash mid-write
    return folder


def _trace_names(page: str) -> set[str]:
    """Names of the plotly traces embedded in the page (decoded from plotly's JSON)."""
    return {json.loads(m) for m in re.findall(r'"name":("(?:[^"\\]|\\.)*")', page)}


# ---- reading ---------------------------------------------------------------------------
def test_load_run_reads_documented_format(tmp_path: Path) -> None:
    run = load_run(write_synthetic_run(tmp_path / "a", truncated_tail=True))
    assert run.name == "a" and run.config["preset"] == "auto"
    assert len(run.events) == 4 and len(run.metrics) == 40
    assert run.bad_lines == 1  # the half-written last line is skipped, not fatal
    assert run.changes_by_source() == {"plateau": 2, "guard": 2}
    assert run.events_by_kind() == {"change": 2, "skip": 1, "rollback": 1}
    assert run.last_step() == 195
    assert run.wall_time() == pytest.approx(0.1 * 195)
    knobs = run.knob_series()
    steps, values = knobs["lr"]["head"]
    assert steps == list(range(0, 200, 5))
    assert values == pytest.approx([synthetic_lr(s, "head") for s in steps])
    assert run.metric_series()["val_acc"] == ([0, 50, 100, 150], [0.0, 0.25, 0.5, 0.75])
    assert run.decision_signals()[0] == "loss_slope"  # named by both change events


def test_load_run_rejects_wrong_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="none of config.json"):
        load_run(tmp_path / "empty")


# ---- figures ---------------------------------------------------------------------------
def test_knob_traces_carry_the_logged_values_and_events(tmp_path: Path) -> None:
    run = load_run(write_synthetic_run(tmp_path / "a"))
    import plotly.graph_objects as go

    fig = _knobs_figure(go, [run], _Colours())
    lr_panel = [t for t in fig.data if t.yaxis in (None, "y")]  # first panel: lr
    lines = {t.name: t for t in lr_panel if t.mode == "lines"}
    alerts = {name: lines.pop(name) for name in ("skip lines", "rollback lines")}
    assert set(lines) == {"a · body", "a · head"}
    head = lines["a · head"]
    assert list(head.y) == pytest.approx([synthetic_lr(s, "head") for s in head.x])
    markers = [t for t in lr_panel if t.mode == "markers"]
    # the two lr changes are marked at their new values, with source and reason on hover
    assert sorted(markers[0].y) == pytest.approx(sorted(synthetic_lr(100, g) for g in GROUPS))
    assert all("plateau" in h and "loss flat" in h for h in markers[0].hovertext)
    # skip and rollback draw vertical lines on each knob panel (lr, weight_decay): one
    # trace per kind and panel, segments separated by gaps, not one shape per event
    assert not fig.layout.shapes
    assert list(alerts["skip lines"].x) == [120, 120, None]
    assert list(alerts["rollback lines"].x) == [150, 150, None]
    lo, hi = alerts["skip lines"].y[:2]
    assert lo == pytest.approx(min(min(t.y) for t in lines.values()))
    assert hi == pytest.approx(max(max(t.y) for t in lines.values()))
    per_kind = [t.name for t in fig.data if t.name in alerts]
    assert sorted(per_kind) == ["rollback lines"] * 2 + ["skip lines"] * 2


def test_event_markers_sit_on_the_loss_curve(tmp_path: Path) -> None:
    run = load_run(write_synthetic_run(tmp_path / "a"))
    import plotly.graph_objects as go

    fig = _loss_figure(go, [run], _Colours())
    rollback = next(t for t in fig.data if t.name == "a · rollback events")
    assert list(rollback.x) == [150]
    assert rollback.y[0] == pytest.approx(2.0 * math.exp(-150 / 80))  # a logged step
    change = next(t for t in fig.data if t.name == "a · change events")
    lo, hi = 2.0 * math.exp(-100 / 80), 2.0 * math.exp(-95 / 80)
    assert all(lo - 1e-12 <= y <= hi + 1e-12 for y in change.y)


# ---- the page --------------------------------------------------------------------------
def test_page_is_self_contained_and_explains_events(tmp_path: Path) -> None:
    page = render_dashboard([write_synthetic_run(tmp_path / "a")])
    assert page.count("Plotly.newPlot(") == int(re.search(r'data-cadence-figures="(\d+)"',
                                                          page).group(1)) == 5
    # no external resources: nothing fetched over the network when opened
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', page)
    assert "plotly.js v" in page or "Plotly" in page[:5_000_000]
    table = page[page.index('<section id="events">'):]
    assert "loss flat for 10 steps (body)" in table
    assert 'class="kind-rollback"' in table and 'class="kind-skip"' in table
    assert "restored snapshot of step 140" in table
    header = page[page.index('<div class="cards">'):page.index('<section id="loss">')]
    assert "plateau: 2" in header and "guard: 2" in header
    assert "1 skip" in header and "1 rollback" in header and "AdamW" in header


def test_html_in_reasons_is_escaped(tmp_path: Path) -> None:
    folder = write_synthetic_run(tmp_path / "a")
    with (folder / "events.jsonl").open("a") as fh:
        fh.write(json.dumps({"step": 10, "group": "body", "knob": "lr", "old": 1, "new": 2,
                             "source": "x", "reason": "<script>alert(1)</script>",
                             "signals": {}, "kind": "change"}) + "\n")
    page = render_dashboard([folder])
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_several_runs_overlay_with_distinct_names(tmp_path: Path) -> None:
    a = write_synthetic_run(tmp_path / "exp1" / "cadence")
    b = write_synthetic_run(tmp_path / "exp2" / "cadence", preset="cosine")
    page = render_dashboard([a, b])
    assert {"exp1/cadence · head", "exp2/cadence · head"} <= _trace_names(page)
    assert "<th>run</th>" in page


def test_empty_or_wrong_input_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runs is empty"):
        render_dashboard([])
    with pytest.raises(TypeError, match="sequence of run folders"):
        render_dashboard(str(tmp_path))  # type: ignore[arg-type]


def test_run_without_events_still_renders(tmp_path: Path) -> None:
    folder = write_synthetic_run(tmp_path / "a")
    (folder / "events.jsonl").write_text("")
    page = render_dashboard([RunData(path=folder, name="quiet", metrics=load_run(folder).metrics)])
    assert "No events: nothing changed." in page


def test_missing_plotly_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(ImportError, match=r"cadence\[report\]"):
        render_dashboard([write_synthetic_run(tmp_path / "a")])


# ---- the command -----------------------------------------------------------------------
def test_cli_writes_one_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_synthetic_run(tmp_path / "a")
    assert main(["report", str(run)]) == 0
    assert (run / "dashboard.html").stat().st_size > 1_000_000  # plotly.js is inlined
    assert "dashboard.html" in capsys.readouterr().out
    out = tmp_path / "sub" / "both.html"
    parent = tmp_path / "demo"
    write_synthetic_run(parent / "baseline", preset="cosine")
    write_synthetic_run(parent / "cadence")
    assert main(["report", str(parent), "-o", str(out)]) == 0  # a folder of runs expands
    page = out.read_text()
    assert {"baseline · body", "cadence · body"} <= _trace_names(page)


def test_cli_bad_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2


def test_many_alerts_are_one_trace_per_kind_and_stages_are_reported(tmp_path: Path) -> None:
    import plotly.graph_objects as go

    from cadence.report.dashboard import STAGES, _loss_figure, render_dashboard

    folder = write_synthetic_run(tmp_path / "a")
    with (folder / "events.jsonl").open("a") as fh:
        for step in range(300):
            fh.write(json.dumps({"step": step, "group": None, "knob": None, "old": None,
                                 "new": None, "source": "guard", "reason": "nan",
                                 "signals": {}, "kind": "skip"}) + "\n")
    run = load_run(folder)
    fig = _loss_figure(go, [run], _Colours())
    assert not fig.layout.shapes
    assert [t.name for t in fig.data].count("skip lines") == 1
    seen: list[str] = []
    render_dashboard([folder], progress=seen.append)
    assert seen == list(STAGES)


def test_trial_events_are_marked_on_the_loss_curve_not_on_the_lr_panel(tmp_path: Path) -> None:
    """A trial's events carry factors (×2 tried, kept or reverted), not lr values: they are
    drawn on the loss curve with their reasons, never as lr markers."""
    import plotly.graph_objects as go

    folder = write_synthetic_run(tmp_path / "a")
    trial = [
        {"step": 40, "group": None, "knob": "lr", "old": None, "new": 2.0, "source": "lr_trials",
         "reason": "trial 1 started: lr ×2 for 10 + 20 steps", "signals": {}, "kind": "trial"},
        {"step": 70, "group": None, "knob": "lr", "old": 2.0, "new": 1.0, "source": "trials",
         "reason": "trial 1 reverted: lr ×2 — projected log-loss +0.1 (SE 0.05, z +2.0)",
         "signals": {"trial_z": 2.0}, "kind": "trial"},
    ]
    with (folder / "events.jsonl").open("a") as fh:
        for e in trial:
            fh.write(json.dumps(e) + "\n")
    run = load_run(folder)
    loss = _loss_figure(go, [run], _Colours())
    marks = next(t for t in loss.data if t.name == "a · trial events")
    assert list(marks.x) == [40, 70]
    assert any("reverted" in h for h in marks.hovertext)
    knobs = _knobs_figure(go, [run], _Colours())
    assert not [t for t in knobs.data if t.name and "trial" in t.name]
