"""Suites: which workloads, methods, learning rates and seeds a ``cadence bench`` runs.

A suite is a list of plans, one per workload. Each method is swept over points of its
own half-decade grid (``grid_indices`` picks which of the 11), plus its documented
default. The oracle family is then refined around its winner (``refine_rounds``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .db import ResultsDB
from .methods import METHODS, ORACLE_METHOD, get_method, method_grid
from .oracle import lr_key, refinement_points
from .runner import RunSpec, run_specs
from .workloads import GROUPS, WORKLOADS, get_workload

PEERS = (
    "adamw-cosine", "adamw-constant", "sgd-cosine", "adamw-onecycle", "adamw-plateau",
    "schedulefree-adamw", "prodigy", "dadapt-adam",
)
CADENCE = (
    "cadence-auto", "cadence-clara", "cadence-hypergradient", "cadence-plateau", "cadence-cosine"
)
#: every controller measured as its own arm (methods/cadence_presets.py, ``CONTROLLER_ARMS``)
CONTROLLER_ARMS = (
    "cadence-momentum", "cadence-weight-decay", "cadence-noise-lr", "cadence-layerwise",
    "cadence-layerwise-ld0.8", "cadence-salera", "cadence-clara-sgd", "cadence-plateau-val",
    "cadence-onecycle",
)
#: auto without one of its parts each (methods/cadence_presets.py, ``ABLATIONS``)
ABLATION_ARMS = tuple(f"cadence-auto-no-{part}"
                      for part in ("prior", "trials", "validation", "drift", "guard"))
FULL_GRID = tuple(range(11))  # 11 half-decade points
DECADES = (0, 2, 4, 6, 8, 10)  # every other point: one per decade


@dataclass(frozen=True)
class Plan:
    workload: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1)
    grid_indices: tuple[int, ...] = DECADES
    steps: int | None = None  # None: the workload's default budget
    eval_every: int | None = None

    @property
    def spacing(self) -> float:
        """Decades between neighbouring swept points."""
        idx = sorted(self.grid_indices)
        return 0.5 * min((b - a for a, b in zip(idx, idx[1:], strict=False)), default=2)

    def lrs(self, method: str) -> list[float]:
        m = get_method(method)
        grid = method_grid(m)
        points = {lr_key(grid[i]) for i in self.grid_indices} | {lr_key(m.default_lr)}
        return sorted(points)

    def specs(self, methods: Iterable[str] | None = None) -> list[RunSpec]:
        wl = get_workload(self.workload)
        steps = self.steps or wl.steps
        every = self.eval_every or max(1, min(wl.eval_every, steps // 10))
        chosen = [m for m in self.methods if methods is None or m in methods]
        return [
            RunSpec(self.workload, m, lr, seed, steps, every)
            for m in chosen for lr in self.lrs(m) for seed in self.seeds
        ]


@dataclass(frozen=True)
class Suite:
    name: str
    plans: tuple[Plan, ...]
    refine_rounds: int = 2
    description: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def with_seeds(self, seeds: Iterable[int]) -> Suite:
        """This suite with every plan run over ``seeds`` (``cadence bench --seeds``)."""
        chosen = tuple(sorted(set(seeds)))
        return replace(self, plans=tuple(replace(p, seeds=chosen) for p in self.plans))


#: the width study: mnist1d-mlp at these widths (``mnist1d-mlp-w<width>`` workloads)
WIDTHS = (64, 128, 256, 512, 1024)
WIDTH_STEPS = 3000


def width_workload(width: int) -> str:
    return f"mnist1d-mlp-w{width}"


def _width_plans() -> tuple[Plan, ...]:
    """Per width: the oracle over the full half-decade grid (refined around its winner)
    and ``cadence-auto`` at its default start only (it promises no lr search), 3 seeds.
    Widths whose workload is not registered are left out (``missing_widths``)."""
    plans: list[Plan] = []
    for w in WIDTHS:
        if width_workload(w) not in WORKLOADS:
            continue
        plans.append(Plan(width_workload(w), (ORACLE_METHOD,), seeds=(0, 1, 2),
                          grid_indices=FULL_GRID, steps=WIDTH_STEPS))
        plans.append(Plan(width_workload(w), ("cadence-auto",), seeds=(0, 1, 2),
                          grid_indices=(), steps=WIDTH_STEPS))
    return tuple(plans)


def missing_widths() -> list[int]:
    """Widths of the study whose workload is not registered in ``workloads.WORKLOADS``."""
    return [w for w in WIDTHS if width_workload(w) not in WORKLOADS]


_QUICK_METHODS = ("adamw-cosine", "adamw-constant", "schedulefree-adamw", "prodigy", "cadence-auto")
_STD_METHODS = PEERS + CADENCE + CONTROLLER_ARMS + ABLATION_ARMS
#: every standard plan, charlm included, runs 3 seeds: a bootstrap CI needs more than two
_STD_SEEDS = (0, 1, 2)
_LONG_METHODS = ("adamw-cosine", "cadence-auto", "schedulefree-adamw")
_FULL_METHODS = PEERS + ("prodigy-mult", "dadapt-adam-mult") + CADENCE + CONTROLLER_ARMS

SUITES: dict[str, Suite] = {
    "quick": Suite(
        "quick",
        tuple(
            Plan(w, _QUICK_METHODS, seeds=(0, 1), grid_indices=(2, 4, 6, 8), steps=s)
            for w, s in (("mnist1d-mlp", 1500), ("digits-cnn", 500), ("quadratic", 1000))
        ),
        description="smoke-level comparison, ~10 min on 2 cores",
    ),
    "standard": Suite(
        "standard",
        (
            Plan("mnist1d-mlp", _STD_METHODS, steps=3000),
            Plan("mnist1d-cnn", _STD_METHODS, steps=2000),
            Plan("digits-cnn", _STD_METHODS, steps=800),
            Plan("charlm", _STD_METHODS, grid_indices=(4, 6, 8), steps=400),
            Plan("logreg", _STD_METHODS, steps=1000),
            Plan("quadratic", _STD_METHODS, steps=1000),
            Plan("rosenbrock", _STD_METHODS, steps=2000),
            Plan("tabular-overfit", _STD_METHODS, steps=1500),
            Plan("finetune", _STD_METHODS, steps=600),
            Plan("sbm-gcn", _STD_METHODS, steps=400),
        ),
        description="every peer, preset, controller arm and ablation, decade grid, 3 seeds: "
                    "4,707 runs before the oracle's refinement, ~6 h on 2 cores (estimated "
                    "from the runs' wall times)",
    ).with_seeds(_STD_SEEDS),
    "long": Suite(
        "long",
        (
            # ~30 ms/update on one core: the oracle, auto and the strongest peer only
            Plan("mnist1d-gru", _LONG_METHODS, seeds=(0, 1, 2), steps=1000),
            # 4x the standard suite's 400 updates, out of the under-trained regime
            Plan("charlm", _LONG_METHODS, seeds=(0, 1, 2), grid_indices=(4, 6, 8), steps=1600),
        ),
        description="the recurrent GRU (1,000 updates) and a 4x longer charlm (1,600 updates): "
                    "oracle, auto and schedule-free AdamW, 3 seeds",
    ),
    "stress": Suite(
        "stress",
        tuple(
            Plan(w, ("adamw-cosine", "cadence-cosine", "cadence-auto"), seeds=(0, 1),
                 grid_indices=(4, 6), steps=3000)
            for w in ("stress-nan", "stress-spike", "stress-shift", "stress-labelnoise",
                      "stress-batch")
        ),
        refine_rounds=0,
        description="injected NaN, gradient spike, data shift, label noise, batch change at "
                    "50%: oracle family vs cadence, ~10 min on 2 cores",
    ),
    "width": Suite(
        "width",
        _width_plans(),
        description="width study: mnist1d-mlp at widths "
                    + "/".join(str(w) for w in WIDTHS if w not in missing_widths())
                    + (f" (not registered: {', '.join(map(str, missing_widths()))})"
                       if missing_widths() else "")
                    + f", {WIDTH_STEPS} steps, 3 seeds, oracle over the full grid, "
                    "cadence-auto at its default; cadence bench width-report",
    ),
    "full": Suite(
        "full",
        tuple(
            Plan(w, _FULL_METHODS, seeds=tuple(range(10)) if w.startswith("mnist1d") else
                 tuple(range(5)), grid_indices=FULL_GRID)
            for w in sorted(WORKLOADS)
        ),
        refine_rounds=3,
        description="everything in BENCHMARK.md at default budgets; many hours; resumable",
    ),
}


def expand_names(
    names: Sequence[str] | None, known: Iterable[str], groups: Mapping[str, Sequence[str]]
) -> list[str] | None:
    """Command-line names → names: groups expand; unknown names raise ``ValueError``."""
    if not names:
        return None
    known = set(known)
    out: list[str] = []
    for n in names:
        for part in n.split(","):
            part = part.strip()
            if not part:
                continue
            if part in groups:
                out.extend(groups[part])
            elif part in known:
                out.append(part)
            else:
                raise ValueError(f"unknown name {part!r}; known: {', '.join(sorted(known))}")
    return out


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return SUITES[name]


def run_suite(
    suite: Suite,
    db: ResultsDB,
    workloads: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    workers: int | None = None,
    log: object = print,
    executor: str = "local",
    ray_address: str | None = None,
) -> dict[str, int]:
    """Run (or resume) ``suite`` into ``db``, optionally limited to some workloads or
    methods, then refine the oracle's grid around its winner. Returns status counts.
    ``executor``/``ray_address``: where the runs execute (``runner.run_specs``)."""
    where: dict[str, Any] = {"executor": executor, "ray_address": ray_address}
    wl_names = expand_names(workloads, WORKLOADS, GROUPS)
    m_names = expand_names(methods, METHODS, {"peers": PEERS, "cadence": CADENCE,
                                              "controllers": CONTROLLER_ARMS,
                                              "ablations": ABLATION_ARMS})
    plans = [p for p in suite.plans if wl_names is None or p.workload in wl_names]
    if wl_names:  # a workload named on the command line but absent from the suite
        have = {p.workload for p in plans}
        base = suite.plans[0]
        plans += [Plan(w, base.methods, base.seeds, base.grid_indices) for w in wl_names
                  if w not in have]
    specs = [s for p in plans for s in p.specs(m_names)]
    totals = run_specs(specs, db, workers=workers, log=log, **where)  # type: ignore[arg-type]
    if m_names is None or ORACLE_METHOD in m_names:
        # Round k sees only the base grid and rounds < k, so a resumed suite asks for
        # exactly the same refinement points again (and skips them).
        allowed: dict[str, set[float]] = {}
        for p in plans:  # a workload may have several plans (the width suite does)
            if ORACLE_METHOD in p.methods:
                allowed.setdefault(p.workload, set()).update(p.lrs(ORACLE_METHOD))
        for _ in range(suite.refine_rounds):
            extra: list[RunSpec] = []
            for p in plans:
                template = p.specs([ORACLE_METHOD])[:1]
                if not template:
                    continue
                t = template[0]
                rows = db.rows(workload=p.workload, method=ORACLE_METHOD)
                rows = [r for r in rows if r["steps"] == t.steps and r["seed"] in p.seeds
                        and lr_key(r["lr"]) in allowed[p.workload]]
                for lr in refinement_points(rows, p.spacing):
                    allowed[p.workload].add(lr)
                    extra += [RunSpec(p.workload, ORACLE_METHOD, lr, seed, t.steps, t.eval_every)
                              for seed in p.seeds]
            if not extra:
                break
            counts = run_specs(extra, db, workers=workers, log=log,  # type: ignore[arg-type]
                               **where)
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
    return totals
