"""Per-step overhead of cadence's presets against the same loop with the bare optimizer.

Both arms train their own copy of the model (same initialisation) in one process,
interleaved step by step (A/B, then B/A) so drift in machine load hits both; warm-up
steps are excluded. Per repeat we take the median step time of each arm and their ratio;
reported as the median and inter-quartile range of the ratios. A ``control`` row times
the bare loop against itself, which shows the noise floor; a ``grad-norm`` row times the
bare loop plus one fused gradient-norm pass, the floor of any regime that checks every
gradient (the guard shares that pass with clipping). Memory: extra tensor bytes
held by cadence (optimizer state plus the regime's state) over the bare optimizer's,
and the Python-heap peak per step (``tracemalloc``). Extra forward passes made inside
``regime.step`` (diagnostics) are counted.

``device="cuda"`` runs both arms on the GPU (batches are moved there; each timed step
ends with ``torch.cuda.synchronize()`` so asynchronous kernels are counted);
``cadence bench gpu`` does that.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cadence.signals.core import per_tensor_norms

from .methods.cadence_presets import PRESETS
from .workloads import get_workload

WORKLOADS = ("charlm", "mnist1d-mlp-w1024")
#: A reference row: the bare loop plus one fused gradient-norm pass brought to the host,
#: the cost the guard's per-step check shares with ``clip_grad_norm_`` (the floor of any
#: regime that looks at every gradient).
GRAD_NORM = "grad-norm"
CPU = torch.device("cpu")


@dataclass
class OverheadResult:
    workload: str
    preset: str
    bare_ms: float
    cadence_ms: float
    ratio_median: float
    ratio_q1: float
    ratio_q3: float
    extra_state_mb: float
    heap_peak_kb_bare: float
    heap_peak_kb_cadence: float
    extra_forwards_per_step: float


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


class _Arm:
    """One model + its step function; counts forward calls."""

    def __init__(
        self, model: nn.Module, step: Callable[[torch.Tensor], None], state: Callable[[], Any]
    ) -> None:
        self.model, self.step, self.state = model, step, state
        self.forwards = 0
        model.register_forward_pre_hook(self._count)

    def _count(self, *_: Any) -> None:
        self.forwards += 1


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (a tensor, or tuples / lists / dicts of them) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def _make_arm(workload: Any, preset: str | None, lr: float,
              device: torch.device = CPU) -> _Arm:
    import cadence

    torch.manual_seed(0)
    model = workload.make_model().to(device)
    opt = torch.optim.AdamW(cadence.param_groups(model, lr=lr, weight_decay=0.01))
    if preset is None:
        def bare(loss: torch.Tensor) -> None:
            opt.step()
            opt.zero_grad(set_to_none=True)
        return _Arm(model, bare, lambda: opt.state_dict()["state"])
    if preset == GRAD_NORM:  # the floor: one gradient pass, as clip_grad_norm_ makes
        params = list(model.parameters())

        def with_norm(loss: torch.Tensor) -> None:
            grads = [p.grad for p in params if p.grad is not None]
            torch.cat([loss.detach().reshape(1), per_tensor_norms(grads)]).tolist()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return _Arm(model, with_norm, lambda: opt.state_dict()["state"])
    regime = cadence.Regime(opt, total_steps=100_000, preset=preset)
    return _Arm(model, regime.step, lambda: [opt.state_dict()["state"], regime.state_dict()])


def _timed_step(arm: _Arm, workload: Any, gen: torch.Generator, i: int,
                device: torch.device = CPU, block: int = 1) -> float:
    """Seconds per update over ``block`` updates, batches staged on ``device`` first. On
    CUDA the clock stops after one synchronize at the block's end, so with ``block > 1``
    a host sync inside the step shows up as lost overlap of host and device."""
    batches = [to_device(workload.batch(i + k, gen), device) for k in range(block)]
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for batch in batches:
        loss = workload.loss(arm.model, batch)
        loss.backward()
        arm.step(loss)
    if cuda:
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / block


def _heap_peak_kb(arm: _Arm, workload: Any, gen: torch.Generator, start: int, n: int,
                  device: torch.device = CPU) -> float:
    tracemalloc.start()
    for i in range(start, start + n):
        _timed_step(arm, workload, gen, i, device)
    peak = tracemalloc.get_traced_memory()[1] / 1024
    tracemalloc.stop()
    return peak


def measure_overhead(
    presets: Sequence[str] = PRESETS,
    workloads: Sequence[str] = WORKLOADS,
    repeats: int = 7,
    steps: int = 30,
    warmup: int = 10,
    lr: float = 1e-3,
    log: Callable[[str], None] = print,
    device: str | torch.device = "cpu",
    block: int = 1,
) -> list[OverheadResult]:
    """Interleaved A/B timing of each preset (and a bare-vs-bare ``control``) on ``device``.

    The two arms alternate step by step (ABAB…, then BABA… in the next repeat), so a slow
    drift of the machine's speed hits both alike; per repeat the ratio of the arms'
    median step times is one sample, reported as median and IQR over the repeats.
    ``block``: updates per timed sample (see ``_timed_step``); 1 times every update alone.
    """
    if repeats < 2 or steps < 1 or block < 1:
        raise ValueError(f"need repeats >= 2, steps >= 1 and block >= 1, got repeats={repeats}, "
                         f"steps={steps}, block={block}")
    dev = torch.device(device)
    torch.set_num_threads(1)
    results = []
    for wl_name in workloads:
        wl = get_workload(wl_name)
        wl.prepare()
        for preset in ("control", GRAD_NORM, *presets):
            bare = _make_arm(wl, None, lr, dev)
            other = _make_arm(wl, None if preset == "control" else preset, lr, dev)
            gen_a, gen_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
            for i in range(warmup):
                _timed_step(bare, wl, gen_a, i, dev)
                _timed_step(other, wl, gen_b, i, dev)
            heap_bare = _heap_peak_kb(bare, wl, gen_a, warmup, 5, dev)
            heap_other = _heap_peak_kb(other, wl, gen_b, warmup, 5, dev)
            other.forwards = bare.forwards = 0
            ratios, t_bare, t_other = [], [], []
            i = warmup + 5
            for r in range(repeats):
                times: dict[int, list[float]] = {id(bare): [], id(other): []}
                for k in range(steps):
                    order = [(bare, gen_a), (other, gen_b)]
                    if (k + r) % 2:
                        order.reverse()
                    for arm, gen in order:
                        times[id(arm)].append(_timed_step(arm, wl, gen, i, dev, block))
                    i += block
                t_bare.append(statistics.median(times[id(bare)]))
                t_other.append(statistics.median(times[id(other)]))
                ratios.append(t_other[-1] / t_bare[-1])
            q = statistics.quantiles(ratios, n=4)
            extra = (_tensor_bytes(other.state()) - _tensor_bytes(bare.state())) / 2**20
            results.append(OverheadResult(
                wl_name, preset, 1e3 * statistics.median(t_bare), 1e3 * statistics.median(t_other),
                statistics.median(ratios), q[0], q[2], extra, heap_bare, heap_other,
                (other.forwards - bare.forwards) / (repeats * steps),
            ))
            log(f"[overhead] {wl_name} {preset}: x{results[-1].ratio_median:.3f} "
                f"(IQR {q[0]:.3f}-{q[2]:.3f})")
    return results


def format_overhead(results: list[OverheadResult]) -> str:
    """A Markdown table of overhead results."""
    if not results:
        return "no overhead results (see the message above)"
    head = ("| workload | preset | bare ms/step | cadence ms/step | ratio (median) | IQR | "
            "extra state MB | heap peak KB bare / cadence | extra forwards/step |")
    lines = [head, "|" + "---|" * 9]
    for r in results:
        lines.append(
            f"| {r.workload} | {r.preset} | {r.bare_ms:.2f} | {r.cadence_ms:.2f} | "
            f"{r.ratio_median:.3f} | {r.ratio_q1:.3f}–{r.ratio_q3:.3f} | {r.extra_state_mb:.2f} | "
            f"{r.heap_peak_kb_bare:.0f} / {r.heap_peak_kb_cadence:.0f} | "
            f"{r.extra_forwards_per_step:.2f} |"
        )
    return "\n".join(lines)
