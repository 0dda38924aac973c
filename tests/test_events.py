"""Events and sinks: dataclass, JSON lines flushed per write, round trip."""

from __future__ import annotations

import json
import math

import pytest

from cadence.events import Event, JsonlSink, MemorySink, Sink, read_events


def ev(**kw):
    base = dict(step=3, group="head", knob="lr", old=0.1, new=0.05, source="plateau",
                reason="no progress", signals={"loss": 1.5})
    base.update(kw)
    return Event(**base)


def test_to_dict_layout_and_round_trip():
    e = ev()
    d = e.to_dict()
    assert d == {"step": 3, "group": "head", "knob": "lr", "old": 0.1, "new": 0.05,
                 "source": "plateau", "reason": "no progress", "signals": {"loss": 1.5},
                 "kind": "change"}
    assert Event.from_dict(json.loads(json.dumps(d))) == e


def test_non_finite_values_stay_valid_json():
    e = ev(kind="skip", group=None, knob=None, old=None, new=None,
           signals={"loss": math.nan, "grad_norm": math.inf})
    line = json.dumps(e.to_dict(), allow_nan=False)
    back = Event.from_dict(json.loads(line))
    assert math.isnan(back.signals["loss"]) and back.signals["grad_norm"] == math.inf
    assert back.group is None and back.kind == "skip"


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="Event.kind='boom'"):
        ev(kind="boom")


def test_jsonl_sink_flushes_each_line(tmp_path):
    path = tmp_path / "sub" / "events.jsonl"
    sink = JsonlSink(path)
    assert path.exists() and path.read_text() == ""
    sink.write(ev())
    assert len(path.read_text().splitlines()) == 1  # visible before close
    sink.write(ev(step=4))
    assert [e.step for e in read_events(path)] == [3, 4]
    sink.close()
    sink.write(ev(step=5))  # reopens in append mode
    sink.close()
    assert [e.step for e in read_events(path)] == [3, 4, 5]


def test_memory_sink_and_protocol():
    m = MemorySink()
    m.write(ev())
    assert m.events == [ev()]
    assert isinstance(m, Sink) and isinstance(JsonlSink.__new__(JsonlSink), Sink)


def test_str_is_one_line_without_signals():
    e = ev(reason="plateau on loss_ema_short: 5 checks without a 1 % gain → lr ×0.5",
           signals={f"s{i}": float(i) for i in range(40)})
    assert str(e) == ("step 3 · head/lr 0.1 → 0.05 · plateau · plateau on loss_ema_short: "
                      "5 checks without a 1 % gain → lr ×0.5")
    long = ev(reason="word " * 100 + "→ lr ×0.98")
    line = str(long)
    assert "\n" not in line and len(line) < 140 and line.endswith("→ lr ×0.98")
    skip = ev(kind="skip", group=None, knob=None, old=None, new=None, source="guard",
              reason="non-finite loss")
    assert str(skip) == "step 3 · skip · guard · non-finite loss"
    replan = ev(kind="replan", group=None, knob=None, old=100, new=200, source="regime",
                reason="total_steps 100 -> 200")
    assert str(replan) == "step 3 · replan 100 → 200 · regime · total_steps 100 -> 200"


def test_repr_is_short():
    e = ev(reason="x" * 500, signals={f"s{i}": float(i) for i in range(40)})
    text = repr([e] * 5)
    assert len(text) < 5 * 200
    assert "signals=<40>" in repr(e) and "s39" not in repr(e)
