"""``cadence bench gpu``: says plainly when no GPU is present; the measuring path itself
runs here on the CPU (and on CUDA where a GPU exists)."""

from __future__ import annotations

import math

import pytest
import torch

from cadence.bench.gpu import no_gpu_message, run_gpu, short_suite


def test_without_a_gpu_it_says_so_and_exits_0(monkeypatch, capsys) -> None:
    from cadence.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "gpu"]) == 0
    out = capsys.readouterr().out
    assert "no CUDA GPU is present" in out and "nothing was measured" in out
    assert "ratio" not in out  # nothing measured, no table
    assert "torch.cuda.is_available() is False" in (no_gpu_message() or "")


def test_bad_arguments_are_refused(capsys) -> None:
    from cadence.cli import main

    assert main(["bench", "gpu", "--repeats", "0"]) == 2
    assert main(["bench", "gpu", "--train-steps", "3"]) == 2


def test_the_measuring_path_runs_on_a_given_device(tmp_path) -> None:
    lines: list[str] = []
    out = tmp_path / "gpu.md"
    assert run_gpu(presets=["cosine"], workloads=["quadratic"],
                   methods=["adamw-cosine", "cadence-onecycle"], repeats=2, steps=2,
                   train_steps=20, out=out, log=lines.append, device="cpu") == 0
    text = out.read_text()
    assert "| quadratic | cosine |" in text  # the overhead table
    assert "| quadratic | cadence-onecycle |" in text  # the short suite
    runs = short_suite(["quadratic"], ["adamw-cosine"], steps=20, device="cpu",
                       log=lines.append)
    assert len(runs) == 1 and runs[0].nonfinite_losses == 0
    assert runs[0].ms_per_step > 0 and math.isfinite(runs[0].last_loss)
    assert math.isnan(runs[0].peak_mem_mb)  # CUDA memory only on CUDA
    with pytest.raises(ValueError, match="steps"):
        short_suite(["quadratic"], ["adamw-cosine"], steps=3, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_short_suite_on_cuda() -> None:  # pragma: no cover - GPU machines only
    runs = short_suite(["quadratic"], ["adamw-cosine", "cadence-auto"], steps=20,
                       device="cuda", log=lambda *_: None)
    assert [r.method for r in runs] == ["adamw-cosine", "cadence-auto"]
    assert all(r.nonfinite_losses == 0 and r.peak_mem_mb > 0 for r in runs)
