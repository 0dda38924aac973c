"""``cadence bench gpu``: overhead and a short suite of arms on a CUDA GPU.

When ``torch.cuda.is_available()`` is false it says so plainly and measures nothing
(exit status 0: no GPU is not an error). Otherwise, on ``cuda:0``:

1. the per-step overhead bench (``overhead.measure_overhead(device="cuda")``): each
   preset against the bare AdamW step, interleaved A/B, each timed step synchronised;
2. a short suite: each arm (``methods``, built exactly as the CPU suites build it) trains
   each workload for ``steps`` updates on the GPU from the same initialisation and batch
   order; reported per run: ms per update, mean training loss over the first and the last
   10 % of updates, non-finite losses, and peak CUDA memory.

The short suite reports training losses only: the bench workloads evaluate their
selection and test splits on the CPU, so the SQLite suites (``cadence bench --suite``)
still run on CPU.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .methods import RunContext, get_method
from .overhead import format_overhead, measure_overhead, to_device
from .workloads import get_workload

GPU_WORKLOADS = ("mnist1d-mlp-w1024", "charlm")
GPU_METHODS = ("adamw-cosine", "cadence-cosine", "cadence-auto", "cadence-onecycle")
GPU_PRESETS = ("cosine", "auto", "clara", "plateau")


def no_gpu_message() -> str | None:
    """``None`` when a CUDA GPU is usable, else the sentence saying why not."""
    if torch.cuda.is_available():
        return None
    build = torch.version.cuda or "none (a CPU-only build)"
    return (f"no CUDA GPU is present: torch.cuda.is_available() is False (torch "
            f"{torch.__version__}, CUDA build {build}); nothing was measured")


@dataclass
class GpuRun:
    workload: str
    method: str
    lr: float
    steps: int
    ms_per_step: float
    first_loss: float
    last_loss: float
    nonfinite_losses: int
    peak_mem_mb: float


def short_suite(
    workloads: Sequence[str] = GPU_WORKLOADS,
    methods: Sequence[str] = GPU_METHODS,
    steps: int = 300,
    device: str | torch.device = "cuda",
    log: Callable[[str], None] = print,
) -> list[GpuRun]:
    """Train every method on every workload for ``steps`` updates on ``device`` (seed 0,
    each method at its default lr); see the module doc for what is reported."""
    if steps < 10:
        raise ValueError(f"steps must be >= 10, got {steps}")
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    out: list[GpuRun] = []
    for wl_name in workloads:
        wl = get_workload(wl_name)
        wl.steps = steps
        wl.prepare()
        for name in methods:
            method = get_method(name)
            missing = method.missing()
            if missing:
                log(f"[gpu] {missing}")
                continue
            torch.manual_seed(0)
            model = wl.make_model().to(dev)
            gen = torch.Generator().manual_seed(0)
            wd = getattr(wl, "weight_decay", None)
            ctx = RunContext(total_steps=steps, higher_is_better=wl.higher_is_better,
                             primary=wl.primary, **({} if wd is None else {"weight_decay": wd}))
            trainer = method.build(model, method.default_lr, ctx)
            if cuda:
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
            losses: list[float] = []
            t0 = time.perf_counter()
            for step in range(steps):
                loss = wl.loss(model, to_device(wl.batch(step, gen), dev))
                losses.append(loss.item())
                loss.backward()
                trainer.step(loss)
            if cuda:
                torch.cuda.synchronize(dev)
            elapsed = time.perf_counter() - t0
            tenth = max(1, steps // 10)
            finite = [v for v in losses if math.isfinite(v)]
            head = [v for v in losses[:tenth] if math.isfinite(v)]
            tail = [v for v in losses[-tenth:] if math.isfinite(v)]
            out.append(GpuRun(
                wl_name, name, method.default_lr, steps, 1e3 * elapsed / steps,
                statistics.fmean(head) if head else math.nan,
                statistics.fmean(tail) if tail else math.nan,
                len(losses) - len(finite),
                torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else math.nan,
            ))
            r = out[-1]
            log(f"[gpu] {wl_name} {name}: {r.ms_per_step:.2f} ms/step, loss "
                f"{r.first_loss:.4g} -> {r.last_loss:.4g}")
    return out


def format_short_suite(runs: list[GpuRun]) -> str:
    head = ("| workload | method | lr | steps | ms/step | loss, first 10 % | loss, last 10 % | "
            "non-finite losses | peak CUDA MB |")
    lines = [head, "|" + "---|" * 9]
    for r in runs:
        lines.append(
            f"| {r.workload} | {r.method} | {r.lr:.3g} | {r.steps} | {r.ms_per_step:.2f} | "
            f"{r.first_loss:.4g} | {r.last_loss:.4g} | {r.nonfinite_losses} | "
            f"{r.peak_mem_mb:.0f} |")
    return "\n".join(lines)


def syncs_per_update(presets: Sequence[str], workload: str, steps: int = 20,
                     device: str | torch.device = "cuda") -> dict[str, float]:
    """Host synchronisations per update made by ``regime.step`` (and the bare optimizer,
    ``"bare"``), counted with ``torch.cuda.set_sync_debug_mode("warn")`` over ``steps``
    updates after 5 warm-up ones, batches staged on the GPU first."""
    import warnings

    from .overhead import _make_arm

    dev = torch.device(device)
    wl = get_workload(workload)
    wl.prepare()
    out: dict[str, float] = {}
    for preset in ("bare", *presets):
        arm = _make_arm(wl, None if preset == "bare" else preset, 1e-3, dev)
        gen = torch.Generator().manual_seed(0)
        batches = [to_device(wl.batch(i, gen), dev) for i in range(5 + steps)]
        counted = 0
        for i, batch in enumerate(batches):
            loss = wl.loss(arm.model, batch)
            loss.backward()
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    arm.step(loss)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            if i >= 5:
                counted += sum("synchroniz" in str(w.message) for w in seen)
        out[preset] = counted / steps
    return out


def run_gpu(
    presets: Sequence[str] = GPU_PRESETS,
    workloads: Sequence[str] = GPU_WORKLOADS,
    methods: Sequence[str] = GPU_METHODS,
    repeats: int = 7,
    steps: int = 30,
    train_steps: int = 300,
    block: int = 10,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    device: str | torch.device | None = None,
) -> int:
    """The whole ``cadence bench gpu`` command; returns its exit status (0 without a GPU).
    ``device`` overrides the CUDA check (tests run the path on ``"cpu"``). The overhead is
    measured twice: each update synchronised alone, and in blocks of ``block`` updates with
    one synchronize per block, where a host sync inside ``regime.step`` costs overlap."""
    if device is None:
        problem = no_gpu_message()
        if problem:
            log(f"cadence bench gpu: {problem}")
            return 0
        device = "cuda"
    dev = torch.device(device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    log(f"cadence bench gpu: measuring on {where} (torch {torch.__version__})")
    overhead = measure_overhead(presets=presets, workloads=workloads, repeats=repeats,
                                steps=steps, device=dev, log=log)
    pipelined = measure_overhead(presets=presets, workloads=workloads, repeats=repeats,
                                 steps=max(1, steps // block), device=dev, log=log, block=block)
    syncs: dict[str, float] = {}
    if dev.type == "cuda":
        try:
            syncs = syncs_per_update(presets, workloads[0], device=dev)
        except RuntimeError as err:  # the debug mode is missing from some builds
            log(f"[gpu] host synchronisations not counted: {err}")
    runs = short_suite(workloads, methods, steps=train_steps, device=dev, log=log)
    text = "\n".join([
        f"# cadence on {where}", "",
        f"torch {torch.__version__}; command: cadence bench gpu --repeats {repeats} "
        f"--steps {steps} --train-steps {train_steps} --block {block}", "",
        "## Per-step overhead (interleaved A/B against the bare AdamW step)", "",
        format_overhead(overhead), "",
        f"## Pipelined overhead (blocks of {block} updates, one synchronize per block)", "",
        format_overhead(pipelined), "",
        f"Host synchronisations per update on {workloads[0]} "
        "(`torch.cuda.set_sync_debug_mode`): "
        + (", ".join(f"{k} {v:g}" for k, v in syncs.items()) or "not counted off CUDA"), "",
        "## Short suite (training loss only; seed 0, each arm at its default lr)", "",
        format_short_suite(runs), "",
    ])
    log(text)
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        log(f"written to {path}")
    return 0


__all__ = ["GPU_METHODS", "GPU_PRESETS", "GPU_WORKLOADS", "GpuRun", "format_short_suite",
           "no_gpu_message", "run_gpu", "short_suite"]
