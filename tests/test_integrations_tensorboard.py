"""The TensorBoard sink: a real Regime's metrics and events, read back from the event file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("tensorboard", reason="needs the [tensorboard] extra (tensorboard)")

from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

import cadence.regime as regime_mod  # noqa: E402
from cadence.integrations.tensorboard import TensorBoardSink  # noqa: E402


def test_metrics_and_events_reach_tensorboard(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    regime = regime_mod.Regime(opt, total_steps=10, preset="constant",
                               log_dir=tmp_path / "run", metrics_every=2)
    TensorBoardSink(tmp_path / "tb").attach(regime)
    gen = torch.Generator().manual_seed(0)
    for step in range(10):
        loss = model(torch.randn(8, 4, generator=gen)).pow(2).mean()
        if step == 5:
            loss = loss * float("nan")  # the guard skips this step: a "skip" event
        loss.backward()
        regime.step(loss)
    regime.observe(val_loss=0.5)
    regime.close()

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    # every metrics line of the JSONL file is in TensorBoard, value for value
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lr_lines = [(r["step"], r["values"]["group0"]["lr"]) for r in lines]
    assert "cadence/lr/group0" in tags and "cadence/momentum/group0" in tags
    got = [(s.step, s.value) for s in acc.Scalars("cadence/lr/group0")]
    assert got == [(s, pytest.approx(v)) for s, v in lr_lines]
    assert [s.value for s in acc.Scalars("cadence/metrics/val_loss")] == [0.5]
    loss_steps = [r["step"] for r in lines if isinstance(r.get("loss"), float)]
    assert [s.step for s in acc.Scalars("cadence/loss")] == loss_steps
    # the skip event: a count under its kind and a text entry with the reason
    skips = [e for e in regime.events if e.kind == "skip"]
    assert len(skips) == 1
    assert [s.step for s in acc.Scalars("cadence/events/skip")] == [skips[0].step]
    texts = acc.Tensors("cadence/events/text_summary")
    assert any(skips[0].reason[:20] in t.tensor_proto.string_val[0].decode() for t in texts)


def test_shared_writer_is_left_open(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path))
    sink = TensorBoardSink(writer, prefix="opt/")
    sink.metrics({"step": 3, "loss": 1.5, "values": {"g": {"lr": 0.1}}, "signals": {}})
    sink.close()
    writer.add_scalar("after", 1.0, 0)  # still usable
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert {"opt/loss", "opt/lr/g", "after"} <= set(acc.Tags()["scalars"])
