"""``cadence demo``: the same model trained twice, side by side, at a poorly chosen lr.

Arm ``baseline`` is what most people write: AdamW with a linear-warmup + cosine
``LambdaLR``. Arm ``cadence`` is the same AdamW, same initial weights, same data order and
same starting learning rate, handed to ``cadence.Regime(preset="auto")``. The starting lr
is deliberately poor (the default is 100× below this workload's tuned value), which is the
everyday situation ``auto`` is meant to absorb. Both arms write a run folder in the
format of docs/formats.md, so ``cadence report`` draws them overlaid.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import numbers
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from cadence.regime.presets import default_warmup
from cadence.regime.run_folder import RunFolder

#: Default workload and its per-step budget: about a minute for both arms on 2 CPU cores.
DEFAULT_WORKLOAD = "mnist1d-cnn"
DEFAULT_STEPS = 3000
#: Deliberately poor: AdamW + warmup/cosine on mnist1d-cnn is tuned near 1e-2 to 3e-2.
DEFAULT_LR = 1e-4
WEIGHT_DECAY = 0.01
METRICS_EVERY = 10
EVALUATIONS = 10  # validation (selection split) checks per run, fed to regime.observe


@dataclass
class ArmResult:
    """What the comparison table shows for one arm."""

    name: str
    test_metric: float
    test_loss: float
    train_loss: float  # mean of the last 5 % of training losses
    peak_lr: float  # largest lr of the first group during the run
    wall_time_s: float  # time spent in this arm's training steps only
    events_by_source: dict[str, int] = field(default_factory=dict)
    events_by_kind: dict[str, int] = field(default_factory=dict)
    run_dir: str = ""
    stopped: str | None = None  # set when the guard stopped the run early


@dataclass
class DemoResult:
    workload: str
    metric: str
    steps: int
    lr: float
    seed: int
    out: str
    dashboard: str | None
    arms: list[ArmResult]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cadence demo`` to the top-level parser."""
    p = subparsers.add_parser(
        "demo",
        help="train a model twice (AdamW+cosine vs cadence auto) at a poor lr and compare",
        description=(
            "Train the same model twice side by side at the same, deliberately poor, learning "
            "rate: AdamW with warmup+cosine, and AdamW under cadence.Regime(preset='auto'). "
            "Prints a comparison table and writes a run folder with a dashboard."
        ),
    )
    p.add_argument("--workload", default=DEFAULT_WORKLOAD,
                   help=f"benchmark workload (default {DEFAULT_WORKLOAD})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"optimizer steps per arm (default {DEFAULT_STEPS} for "
                   f"{DEFAULT_WORKLOAD}, the workload's own budget otherwise)")
    p.add_argument("--lr", type=float, default=DEFAULT_LR,
                   help=f"starting learning rate of both arms (default {DEFAULT_LR:g})")
    p.add_argument("--out", default=None,
                   help="run folder (default runs/demo-<timestamp>)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and data order")
    p.add_argument("--no-dashboard", action="store_true", help="skip the HTML dashboard")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    try:
        result = run_demo(
            workload=args.workload, steps=args.steps, lr=args.lr, out=args.out,
            seed=args.seed, dashboard=not args.no_dashboard,
        )
    except (ValueError, ImportError) as err:
        print(f"cadence demo: {err}")
        return 2
    print_table(result)
    for arm in result.arms:
        if arm.stopped:
            print(f"note: {arm.name} {arm.stopped}")
    if result.dashboard:
        print(f"\nDashboard: {result.dashboard}")
        print(f"(re-draw with: cadence report {result.out})")
    print(f"Run folder: {result.out}")
    return 0


def run_demo(
    workload: str = DEFAULT_WORKLOAD,
    steps: int | None = None,
    lr: float = DEFAULT_LR,
    out: str | Path | None = None,
    seed: int = 0,
    dashboard: bool = True,
    progress: bool | None = None,
) -> DemoResult:
    """Train both arms, write the run folder (and dashboard), return the comparison.

    ``progress=None`` shows the live display unless ``CADENCE_NO_PROGRESS=1``.
    """
    import cadence
    from cadence.bench.workloads import get_workload

    if dashboard:  # before minutes of training, not after
        from cadence.report.dashboard import require_plotly

        try:
            require_plotly()
        except ImportError as err:
            raise ImportError(f"{err} (or pass --no-dashboard)") from None
    if not (isinstance(lr, numbers.Real) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if steps is not None and (not isinstance(steps, int) or steps < 10):
        raise ValueError(f"steps must be an integer >= 10, got {steps!r}")
    wl = {arm: get_workload(workload) for arm in ("baseline", "cadence")}  # own data order
    for w in wl.values():
        w.prepare()
    total = steps or (DEFAULT_STEPS if workload == DEFAULT_WORKLOAD else wl["cadence"].steps)
    warmup = default_warmup(total, None)  # the same warmup as auto's schedule
    metric = wl["cadence"].primary
    folder = Path(out) if out else Path("runs") / _dt.datetime.now().strftime(
        "demo-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    if progress is None:
        progress = os.environ.get("CADENCE_NO_PROGRESS", "") not in ("1", "true", "yes")

    arms: dict[str, _Arm] = {}
    for name in ("baseline", "cadence"):
        torch.manual_seed(seed)  # identical initial weights in both arms
        model = wl[name].make_model()
        opt = torch.optim.AdamW(cadence.param_groups(model, lr=lr, weight_decay=WEIGHT_DECAY))
        arms[name] = _Arm(name, wl[name], model, opt, torch.Generator().manual_seed(seed))
    base = arms["baseline"]
    base.scheduler = torch.optim.lr_scheduler.LambdaLR(
        base.opt, cadence.schedules.warmup_cosine(total_steps=total, warmup_steps=warmup)
    )
    base.log = _BaselineLog(folder / "baseline", base.opt, total, warmup, workload, lr)
    arms["cadence"].regime = cadence.Regime(
        arms["cadence"].opt, total_steps=total, preset="auto", log_dir=folder / "cadence"
    )

    eval_every = max(1, total // EVALUATIONS)
    with _Display(progress, total, list(arms)) as display:
        for step in range(total):
            for arm in arms.values():
                arm.train_step(step)
                if (step + 1) % eval_every == 0 or step + 1 == total:
                    arm.validate()
            if step % 10 == 0 or step + 1 == total:
                display.update(step + 1, {a.name: (a.last_loss, a.lr()) for a in arms.values()})

    results = [arm.finish() for arm in arms.values()]
    for r in results:
        r.run_dir = str(folder / r.name)
    page = None
    if dashboard:
        from cadence.report import write_dashboard

        page = str(write_dashboard([folder / "baseline", folder / "cadence"],
                                   folder / "dashboard.html",
                                   title=f"cadence demo · {workload} · lr {lr:g}").resolve())
    result = DemoResult(workload, metric, total, float(lr), seed, str(folder.resolve()), page,
                        results)
    (folder / "summary.json").write_text(json.dumps(asdict(result), indent=2))
    return result


class _Arm:
    """One training run: model, optimizer, and either a LambdaLR or a Regime."""

    def __init__(self, name: str, workload: Any, model: torch.nn.Module,
                 opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
        self.name, self.workload, self.model, self.opt, self.gen = name, workload, model, opt, gen
        self.scheduler: Any = None
        self.regime: Any = None
        self.log: _BaselineLog | None = None
        self.losses: list[float] = []
        self.last_loss = float("nan")
        self.seconds = 0.0
        self.peak_lr = 0.0
        self.stopped: str | None = None  # why this arm stopped early, if it did

    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def train_step(self, step: int) -> None:
        if self.stopped is not None:
            return
        t0 = time.perf_counter()
        self.model.train()
        loss = self.workload.loss(self.model, self.workload.batch(step, self.gen))
        loss.backward()
        if self.regime is not None:
            from cadence.regime import GuardError

            try:
                self.regime.step(loss)
            except GuardError as err:  # the guard gave up: keep the model, stop training
                self.stopped = f"stopped by the guard at step {step}: {err}"
        else:
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.scheduler.step()
        self.seconds += time.perf_counter() - t0
        self.last_loss = float(loss.detach())
        self.peak_lr = max(self.peak_lr, self.lr())
        self.losses.append(self.last_loss)
        if self.log is not None and (step + 1) % METRICS_EVERY == 0:
            self.log.metrics(step + 1, self.last_loss)

    def validate(self) -> None:
        if self.stopped is not None:
            return
        scores = self.workload.evaluate(self.model, "selection")
        metrics = {f"val_{k}": float(v) for k, v in scores.items()}
        if self.regime is not None:
            self.regime.observe(**metrics)
        elif self.log is not None:
            self.log.metrics(len(self.losses), self.last_loss, metrics)

    def finish(self) -> ArmResult:
        scores = self.workload.evaluate(self.model, "test")
        tail = self.losses[-max(1, len(self.losses) // 20):]
        by_source: dict[str, int] = {}
        by_kind: dict[str, int] = {}
        if self.regime is not None:
            for e in self.regime.events:
                by_source[e.source] = by_source.get(e.source, 0) + 1
                by_kind[e.kind] = by_kind.get(e.kind, 0) + 1
            self.regime.close()
        if self.log is not None:
            self.log.close()
        return ArmResult(
            name=self.name,
            test_metric=float(scores[self.workload.primary]),
            test_loss=float(scores["loss"]),
            train_loss=sum(tail) / len(tail),
            peak_lr=self.peak_lr,
            wall_time_s=self.seconds,
            events_by_source=by_source,
            events_by_kind=by_kind,
            stopped=self.stopped,
        )


class _BaselineLog:
    """Writes the baseline arm's run folder through the Regime's ``RunFolder``, so the
    dashboard can overlay a plain torch run on the cadence one."""

    def __init__(self, folder: Path, opt: torch.optim.Optimizer, total: int, warmup: int,
                 workload: str, lr: float) -> None:
        self.opt = opt
        self.names = [g.get("name") or f"group{i}" for i, g in enumerate(opt.param_groups)]
        config = {
            "preset": "none (torch LambdaLR: linear warmup + cosine)",
            "total_steps": total, "warmup_steps": warmup, "controllers": [],
            "schedule": {"kind": "warmup_cosine", "total_steps": total, "warmup_steps": warmup},
            "bounds": {}, "workload": workload,
            "optimizer": {"class": type(opt).__name__, "defaults": {"lr": lr}},
            "groups": [{"name": n, "num_params": sum(p.numel() for p in g["params"]),
                        "base": {"lr": g.get("initial_lr", g["lr"])}}
                       for n, g in zip(self.names, opt.param_groups, strict=True)],
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        self.folder = RunFolder(folder, config)  # a plain schedule logs no events

    def metrics(self, step: int, loss: float, observed: dict[str, float] | None = None) -> None:
        values = {
            n: {"lr": g["lr"], "momentum": g["betas"][0], "beta2": g["betas"][1],
                "weight_decay": g["weight_decay"]}
            for n, g in zip(self.names, self.opt.param_groups, strict=True)
        }
        row: dict[str, Any] = {"step": step, "time": time.time(), "loss": loss,
                               "values": values, "signals": {}}
        if observed:
            row["metrics"] = observed
        self.folder.metrics(row)

    def close(self) -> None:
        self.folder.close()


class _Display:
    """Live rich progress (one bar per arm, with loss and lr); silent when disabled or
    when rich is not installed."""

    def __init__(self, enabled: bool, total: int, arms: list[str]) -> None:
        self.enabled, self.total, self.arms = enabled, total, arms
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Display:
        if not self.enabled:
            return self
        try:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:
            return self
        self.progress = Progress(
            TextColumn("[bold]{task.description:<9}"), BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("lr {task.fields[lr]}"),
            TimeElapsedColumn(),
        )
        self.progress.__enter__()
        for arm in self.arms:
            self.tasks[arm] = self.progress.add_task(arm, total=self.total, loss="-", lr="-")
        return self

    def update(self, step: int, state: dict[str, tuple[float, float]]) -> None:
        if self.progress is None:
            return
        for arm, (loss, lr) in state.items():
            self.progress.update(self.tasks[arm], completed=step, loss=f"{loss:.4f}",
                                 lr=f"{lr:.2e}")

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def print_table(result: DemoResult) -> None:
    """The comparison table (rich when available, plain text otherwise)."""
    rows = [
        (f"test {result.metric}", [f"{a.test_metric:.4f}" for a in result.arms]),
        ("test loss", [f"{a.test_loss:.4f}" for a in result.arms]),
        ("final train loss", [f"{a.train_loss:.4f}" for a in result.arms]),
        ("peak lr", [f"{a.peak_lr:.2e}" for a in result.arms]),
        ("events by source", [", ".join(f"{s}: {n}" for s, n in a.events_by_source.items())
                              or "—" for a in result.arms]),
        ("skips / rollbacks", [f"{a.events_by_kind.get('skip', 0)} / "
                               f"{a.events_by_kind.get('rollback', 0)}" for a in result.arms]),
        ("wall time", [f"{a.wall_time_s:.1f} s" for a in result.arms]),
    ]
    title = (f"{result.workload}, {result.steps} steps, starting lr {result.lr:g}, "
             f"seed {result.seed}")
    heads = ["AdamW + warmup/cosine" if a.name == "baseline" else "cadence auto"
             for a in result.arms]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        width = max(len(r[0]) for r in rows) + 2
        print(title)
        print(" " * width + "".join(f"{h:<26}" for h in heads))
        for label, cells in rows:
            print(f"{label:<{width}}" + "".join(f"{c:<26}" for c in cells))
        return
    table = Table(title=title)
    table.add_column("")
    for h in heads:
        table.add_column(h, justify="right")
    for label, cells in rows:
        table.add_row(label, *cells)
    Console().print(table)
