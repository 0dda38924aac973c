"""Run workloads × methods × initial learning rates × seeds, one row per run.

Each run is a pure function of its ``RunSpec``: the model is initialised right after
``torch.manual_seed(seed)`` and the data order comes from a generator seeded by ``seed``
alone, so every method sees the same initialisation and batches. Divergence (a
non-finite loss that reaches the weights, a final training loss above the initial one,
or the method's own step raising, e.g. a guard giving up) is recorded, never raised;
an exception elsewhere (set-up, evaluation) is stored as status ``error`` and retried
on resume. Runs already in the database are skipped (resume).
Workers are separate processes (one fresh process per run, so peak memory is per run).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import torch

from .db import ResultsDB
from .methods import RunContext, get_method
from .workloads import get_workload

#: bump when a change makes old rows incomparable (it enters every run key)
HARNESS_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """One run. ``lr`` is the swept value (see the method's ``lr_meaning``)."""

    workload: str
    method: str
    lr: float
    seed: int
    steps: int
    eval_every: int

    def key(self) -> str:
        """Hash of the full configuration: equal keys mean interchangeable runs."""
        payload = {**asdict(self), "lr": float(f"{self.lr:.6g}"), "harness": HARNESS_VERSION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _cadence_version() -> str:
    try:
        import cadence

        return str(cadence.__version__)
    except Exception:  # pragma: no cover
        return "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):  # not Linux: fall back to the high-water mark
        return _maxrss_mb()


def _maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10


def _finite_params(model: torch.nn.Module) -> int:
    """Number of non-finite parameter entries (0 for a healthy model)."""
    return int(sum((~torch.isfinite(p.detach())).sum().item() for p in model.parameters()))


def _better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Train one run and return its database row. Never raises for a training failure."""
    start_wall = time.perf_counter()
    rss0 = _rss_mb()
    workload = get_workload(spec.workload)
    method = get_method(spec.method)
    config: dict[str, Any] = {
        **asdict(spec), **workload.info(), "method_family": method.family,
        "lr_meaning": method.lr_meaning, "method_description": method.description,
        "harness": HARNESS_VERSION,
    }
    row: dict[str, Any] = {
        "run_key": spec.key(), "workload": spec.workload, "method": spec.method,
        "lr": spec.lr, "seed": spec.seed, "steps": spec.steps, "config": config,
        "diverged": 0, "cadence_version": _cadence_version(), "machine": machine_info(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    curve: list[dict[str, Any]] = []
    train_time = 0.0
    try:
        torch.set_num_threads(1)
        workload.steps = spec.steps  # the run's budget (stress events sit at half of it)
        workload.prepare()
        torch.manual_seed(spec.seed)
        model = workload.make_model()
        gen = torch.Generator().manual_seed(spec.seed)
        wd = getattr(workload, "weight_decay", None)
        ctx = RunContext(
            total_steps=spec.steps,
            higher_is_better=workload.higher_is_better,
            primary=workload.primary,
            recalibrate=workload.recalibrate_batchnorm
            if workload.has_batchnorm(model) else None,
            param_group_spec=getattr(workload, "param_group_spec", None),
            **({} if wd is None else {"weight_decay": wd}),
        )
        trainer = method.build(model, spec.lr, ctx)
        config["weight_decay"] = ctx.weight_decay

        def evaluate(step: int, batch_losses: list[float], with_train: bool) -> dict[str, Any]:
            trainer.eval_mode(model)
            point: dict[str, Any] = {"step": step, "time": train_time, "lr": trainer.current_lr()}
            finite = [b for b in batch_losses if math.isfinite(b)]
            point["batch_loss"] = sum(finite) / len(finite) if finite else None
            splits = ("train", "selection", "test") if with_train else ("selection", "test")
            for split in splits:
                for k, v in workload.evaluate(model, split).items():
                    point[f"{split}_{k}"] = v
            trainer.train_mode(model)
            trainer.observe({k[len("selection_"):]: v for k, v in point.items()
                             if k.startswith("selection_") and v is not None and math.isfinite(v)})
            if with_train and trainer.finish(model):  # e.g. the best-by-validation weights
                trainer.eval_mode(model)
                for split in splits:
                    for k, v in workload.evaluate(model, split).items():
                        point[f"{split}_{k}"] = v
                trainer.train_mode(model)
            return point

        curve.append(evaluate(0, [], True))
        batch_losses: list[float] = []
        nonfinite_losses = 0
        status, reason = "ok", None
        for step in range(spec.steps):
            t0 = time.perf_counter()
            batch = workload.perturb(step, workload.batch(step, gen), gen)
            loss = workload.perturb_loss(step, workload.loss(model, batch))
            value = loss.item()
            loss.backward()
            try:
                trainer.step(loss)
            except Exception as err:  # e.g. a guard giving up: the method failed this run
                status = "diverged"
                reason = f"the method stopped the run at step {step}: {type(err).__name__}: {err}"
                break
            train_time += time.perf_counter() - t0
            batch_losses.append(value)
            if not math.isfinite(value):
                nonfinite_losses += 1
                if _finite_params(model):
                    status = "diverged"
                    reason = f"non-finite loss reached the weights at step {step}"
                    break
            done = step + 1
            if done % spec.eval_every == 0 or done == spec.steps:
                point = evaluate(done, batch_losses, done == spec.steps)
                curve.append(point)
                batch_losses = []
                bad = [k for k, v in point.items() if k != "batch_loss" and isinstance(v, float)
                       and not math.isfinite(v)]
                if bad and _finite_params(model):
                    status, reason = "diverged", f"non-finite weights at step {done}"
                    break
        nan_in_weights = _finite_params(model)
        first, last = curve[0], curve[-1]
        if status == "ok":
            t_first, t_last = first.get("train_loss"), last.get("train_loss")
            if t_last is None or not math.isfinite(t_last):
                status, reason = "diverged", "non-finite final training loss"
            elif t_first is not None and t_last > t_first:
                status = "diverged"
                reason = f"final training loss {t_last:.4g} > initial {t_first:.4g}"
        # raw final values are kept even for diverged runs; reports score those as worst
        final = {k: v for k, v in last.items() if k.split("_")[0] in ("train", "selection", "test")}
        final["nan_in_weights"] = float(nan_in_weights)
        final["nonfinite_losses"] = float(nonfinite_losses)
        recovery = _recovery_steps(curve, workload)
        if recovery is not None:
            final["recovery_steps"] = recovery
        row.update(
            status=status, diverged=int(status == "diverged"), error=reason,
            final_metrics=final, best_metrics=_best(curve), curve=curve,
        )
    except Exception as err:  # a crash is a result too; the suite goes on
        row.update(status="error", error=f"{type(err).__name__}: {err}\n{traceback.format_exc()}",
                   curve=curve)
    row["train_time"] = train_time
    row["wall_time"] = time.perf_counter() - start_wall
    row["peak_mem_mb"] = max(0.0, _maxrss_mb() - rss0)
    return row


def _best(curve: list[dict[str, Any]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for point in curve:
        for k, v in point.items():
            if k.split("_")[0] not in ("selection", "test") or v is None or not math.isfinite(v):
                continue
            higher = k.endswith("_acc")
            if k not in best or _better(v, best[k], higher):
                best[k] = v
    return best


def _recovery_steps(curve: list[dict[str, Any]], workload: Any) -> float | None:
    """Stress workloads: steps after the disturbance until the selection metric is back
    to its last pre-disturbance value (∞ if never)."""
    event = workload.info().get("event_step")
    if event is None:
        return None
    key = f"selection_{workload.primary}"
    before = [p for p in curve if p["step"] <= event and p.get(key) is not None]
    if not before:
        return None
    ref = before[-1][key]
    for p in curve:
        v = p.get(key)
        if p["step"] > event and v is not None and math.isfinite(v):
            ok = v >= ref - 0.005 if workload.higher_is_better else v <= ref * 1.01
            if ok:
                return float(p["step"] - event)
    return float("inf")


def _run_safe(spec: RunSpec) -> dict[str, Any]:
    return run_one(spec)


def _progress(total: int) -> Any:
    """A rich progress bar with ETA, or ``None`` when disabled or rich is missing."""
    if os.environ.get("CADENCE_NO_PROGRESS") == "1" or total == 0:
        return None
    try:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
    except ImportError:
        return None
    return Progress(
        TextColumn("[bold]bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.description}"),
    )


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _results(
    specs: list[RunSpec], workers: int, executor: str = "local", ray_address: str | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of ``specs`` in the order they finish: in this process (``workers <= 1``), a
    local process pool, or Ray tasks (``executor="ray"``, see ``executors``)."""
    if executor == "ray":
        from .executors import ray_results

        yield from ray_results(specs, run_one, address=ray_address, num_cpus=workers or None)
        return
    if workers <= 1:
        for spec in specs:
            yield run_one(spec)
        return
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["cadence.bench.runner"])
    with ctx.Pool(processes=workers, maxtasksperchild=1) as pool:
        yield from pool.imap_unordered(_run_safe, specs)


def run_specs(
    specs: Iterable[RunSpec],
    db: ResultsDB,
    workers: int | None = None,
    log: Any = print,
    executor: str = "local",
    ray_address: str | None = None,
) -> dict[str, int]:
    """Run every spec not yet in ``db`` and store the rows; returns counts by status
    (plus ``skipped`` for rows already present and ``unavailable`` for missing extras).

    ``executor="ray"`` sends the runs to Ray (``ray_address``; ``None`` starts a local
    instance with ``workers`` CPUs); the rows and the resume rule are the same."""
    if workers is not None and workers < 0:
        raise ValueError(f"workers={workers!r} must be >= 0")
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if executor == "ray":
        from .executors import import_ray

        import_ray()  # fail before any work when the extra is missing
    workers = _default_workers() if workers is None else workers
    done = db.done_keys()
    counts = {"ok": 0, "diverged": 0, "error": 0, "skipped": 0, "unavailable": 0}
    todo: list[RunSpec] = []
    seen: set[str] = set()
    warned: set[str] = set()
    for spec in specs:
        key = spec.key()
        if key in seen:
            continue
        seen.add(key)
        if key in done:
            counts["skipped"] += 1
            continue
        missing = get_method(spec.method).missing()
        if missing:
            counts["unavailable"] += 1
            if spec.method not in warned:
                warned.add(spec.method)
                log(f"[cadence bench] {missing}")
            continue
        todo.append(spec)
    for name in sorted({s.workload for s in todo}):  # build data caches once, up front
        get_workload(name).prepare()
    bar = _progress(len(todo))
    task = bar.add_task("", total=len(todo)) if bar else None
    if bar:
        bar.start()
    try:
        for row in _results(todo, workers, executor, ray_address):
            db.insert(row)
            counts[row["status"]] += 1
            if row["status"] == "error":
                first = (row.get("error") or "").splitlines()[0]
                log(f"[cadence bench] error in {row['workload']}/{row['method']} "
                    f"lr={row['lr']:.3g} seed={row['seed']}: {first}")
            if bar:
                bar.update(task, advance=1,
                           description=f"{row['workload']} {row['method']} {row['lr']:.2g}")
    finally:
        if bar:
            bar.stop()
    return counts
