"""Which lr *shape* should ``auto`` anneal with? (docs/auto.md, "Schedule shape").

``auto`` keeps the tuned oracle's shape: 5 % warmup, then cosine to 0. Two studies:

* ``bench``: ``cadence-auto`` with its schedule replaced by warmup-stable-decay (5 % warmup,
  hold, linear decay to 0 over the last ``--decay`` of the run) at every start and seed of
  the standard suite, into a results database (resumable, same rows as ``cadence bench``;
  compare with ``cadence bench report``). ~20 min per seed on one core.
* ``probe``: plain AdamW at one lr with one shape on one workload (``cosine``, ``wsd``,
  ``linear``, or ``stall``: hold the peak until the training log-loss stops falling
  significantly over a window, then cosine to 0 over the steps left). Prints the test
  metrics. Seconds to a minute.

    python tests/scripts/auto_schedule_shape.py bench --db wsd.sqlite --seeds 0 1 2
    python tests/scripts/auto_schedule_shape.py bench --db wsd.sqlite --seeds 0 1 2 \
        --auto-warmup --workloads charlm
    python tests/scripts/auto_schedule_shape.py probe charlm 1e-3 --shape wsd
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any

import torch

import cadence
from cadence import schedules
from cadence.bench.db import ResultsDB
from cadence.bench.methods import METHODS
from cadence.bench.methods.base import Method
from cadence.bench.methods.cadence_presets import CadenceTrainer
from cadence.bench.runner import run_specs
from cadence.bench.suites import get_suite
from cadence.bench.workloads import get_workload
from cadence.regime.presets import auto_warmup
from cadence.regime.trials import Trials

WARMUP = 0.05


def wsd(total: int, decay: float, floor: bool = False) -> schedules.Schedule:
    """Warmup (5 %, or ``auto``'s floored warmup with ``floor``), hold, linear decay."""
    warm = auto_warmup(total, None) if floor else round(WARMUP * total)
    return schedules.wsd(total, warm, decay_steps=round(decay * total), decay_type="linear")


def bench(db: str, decay: float, seeds: list[int], floor: bool = False,
          workloads: list[str] | None = None) -> None:
    name = f"cadence-auto-wsd{round(decay * 100)}" + ("-floor" if floor else "")
    METHODS[name] = Method(
        name, lambda model, lr, ctx: CadenceTrainer(
            model, lr, ctx, "auto", schedule=wsd(ctx.total_steps, decay, floor)),
        default_lr=1e-3, lr_meaning="initial learning rate",
        description=f"study: auto with warmup-stable-decay ({decay:.0%} linear decay)")
    specs = [dataclasses.replace(s, method=name)
             for p in get_suite("standard").with_seeds(seeds).plans
             if not workloads or p.workload in workloads
             for s in p.specs(["cadence-auto"])]
    print(run_specs(specs, ResultsDB(db), workers=1))


def setup(workload: str, lr: float, seed: int) -> tuple[Any, int, Any, Any, Any]:
    """One workload at its standard-suite budget, seeded as the bench seeds it: the workload,
    its number of updates, the model, the batch generator and an AdamW over its groups."""
    torch.set_num_threads(1)
    wl = get_workload(workload)
    total = next(p.steps or wl.steps for p in get_suite("standard").plans
                 if p.workload == workload)
    wl.steps = total
    wl.prepare()
    torch.manual_seed(seed)
    model = wl.make_model()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(cadence.param_groups(
        model, lr=lr, weight_decay=getattr(wl, "weight_decay", 0.01)))
    return wl, total, model, gen, opt


def probe(workload: str, lr: float, shape: str, seed: int, window: float,
          decay: float) -> None:
    wl, total, model, gen, opt = setup(workload, lr, seed)
    warm = round(WARMUP * total)
    fixed = {"cosine": schedules.warmup_cosine(total, warm), "wsd": wsd(total, decay),
             "linear": wsd(total, 1 - WARMUP)}.get(shape)
    win = max(30, round(window * total))
    trials = Trials(total)  # its stall test: log-loss slope above -2 standard errors
    anneal_at: int | None = None
    losses: list[tuple[int, float]] = []
    for step in range(total):
        if fixed is not None:
            m = fixed(step)
        elif step < warm:
            m = step / warm
        elif anneal_at is None or step < anneal_at:
            m = 1.0
        else:
            m = 0.5 * (1 + math.cos(math.pi * (step - anneal_at) / (total - anneal_at)))
        for g in opt.param_groups:
            g["lr"] = lr * m
        loss = wl.loss(model, wl.batch(step, gen))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append((step, loss.item()))
        if (fixed is None and anneal_at is None and step >= warm + win
                and (trials.stalled(losses[-win:]) or step >= (1 - decay) * total)):
            anneal_at = step + 1
    model.eval()
    test = {k: round(v, 5) for k, v in wl.evaluate(model, "test").items()}
    print(f"{workload} lr {lr:g} seed {seed} {shape}"
          + (f" (anneal from step {anneal_at} of {total})" if fixed is None else "")
          + f": test {test}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="study", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--db", required=True)
    b.add_argument("--decay", type=float, default=0.2)
    b.add_argument("--seeds", type=int, nargs="+", default=[0])
    b.add_argument("--auto-warmup", action="store_true",
                   help="warm up as auto does (auto_warmup: 5 %% with a floor) instead of 5 %%")
    b.add_argument("--workloads", nargs="+", help="only these workloads")
    p = sub.add_parser("probe")
    p.add_argument("workload")
    p.add_argument("lr", type=float)
    p.add_argument("--shape", choices=["cosine", "wsd", "linear", "stall"], default="cosine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window", type=float, default=0.04, help="stall window, share of run")
    p.add_argument("--decay", type=float, default=0.2, help="wsd: share of the run decaying")
    a = ap.parse_args()
    if a.study == "bench":
        bench(a.db, a.decay, a.seeds, a.auto_warmup, a.workloads)
    else:
        probe(a.workload, a.lr, a.shape, a.seed, a.window, a.decay)


if __name__ == "__main__":
    main()
