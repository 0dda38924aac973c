"""How long should ``auto`` warm up? (docs/auto.md, "Warmup").

Two probes, each through the public surface on one bench workload (one thread, serially):

* ``final``: the test metric of a preset (``auto`` or ``cosine``) at one lr with an explicit
  ``warmup_steps``, per seed — e.g. the plain cosine preset on logreg with 50 and 100
  warmup updates, which shows what the longer warmup costs a convex problem;
* ``trace``: the training loss and gradient norm every 10 updates of the first 200 — e.g.
  ``auto`` on charlm from start 0.1 (replaced by the scale rule's 2.64e-3) with 20 and 100
  warmup updates, which shows the short warmup's stall.

    python tests/scripts/auto_warmup.py final logreg 0.1 --preset cosine --warmup 50 100
    python tests/scripts/auto_warmup.py trace charlm 0.1 --warmup 20 100
"""

from __future__ import annotations

import argparse
import warnings

import torch
from auto_schedule_shape import setup  # the same workload setup as the shape study

import cadence


def run(workload: str, lr: float, preset: str, warmup: int, seed: int,
        trace: bool) -> tuple[float, list[str]]:
    """Train one run; its test metric, and a trace line every 10 updates if asked."""
    wl, total, model, gen, opt = setup(workload, lr, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the scale rule's replacement warning
        regime = cadence.Regime(opt, total_steps=total, preset=preset, warmup_steps=warmup)
        lines: list[str] = []
        losses: list[float] = []
        norms: list[float] = []
        for step in range(total):
            loss = wl.loss(model, wl.batch(step, gen))
            loss.backward()
            if trace and step < 200:
                grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
                norms.append(float(torch.linalg.vector_norm(torch.stack(grads))))
            regime.step(loss)
            losses.append(loss.item())
            if trace and step < 200 and (step + 1) % 10 == 0:
                lines.append(f"  update {step + 1:4d}: loss {sum(losses[-10:]) / 10:.3f}, "
                             f"grad norm {sum(norms[-10:]) / 10:.3f}, "
                             f"lr {opt.param_groups[0]['lr']:.2e}")
    model.eval()
    return wl.evaluate(model, "test")[wl.primary], lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probe", choices=["final", "trace"])
    ap.add_argument("workload")
    ap.add_argument("lr", type=float)
    ap.add_argument("--preset", default="auto", choices=["auto", "cosine"])
    ap.add_argument("--warmup", type=int, nargs="+", required=True, help="warmup updates")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = ap.parse_args()
    for warmup in a.warmup:
        for seed in a.seeds if a.probe == "final" else a.seeds[:1]:
            metric, lines = run(a.workload, a.lr, a.preset, warmup, seed, a.probe == "trace")
            print(f"{a.workload} {a.preset} lr {a.lr:g} warmup {warmup} seed {seed}: "
                  f"test {metric:.6g}")
            if lines:
                print("\n".join(lines))


if __name__ == "__main__":
    main()
