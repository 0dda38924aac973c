"""Why a restart goes back to the *initial* weights (docs/auto.md, "Restarts"): plain AdamW
+ warmup/cosine on ``tabular-overfit`` at the scale rule's lr (0.0156), and at step 300
either carry on, or start again at a lower lr from the initial weights or from the
best-by-validation ones (observed every 100 steps). Prints, per seed, the final test MSE,
the test MSE of the best-by-validation weights and the step they are from.

    python tests/scripts/tabular_restart.py      # ~1 min on one core
"""

from __future__ import annotations

import copy
import math

import torch

from cadence.bench.workloads import get_workload


def run(seed: int, phases: list[tuple[int, float, str]], steps: int = 1500,
        every: int = 100) -> tuple[float, float, int]:
    wl = get_workload("tabular-overfit")
    wl.prepare()
    torch.manual_seed(seed)
    model = wl.make_model()
    init = copy.deepcopy(model.state_dict())
    gen = torch.Generator().manual_seed(seed)
    best: tuple[float, dict | None, int] = (math.inf, None, 0)
    starts = {s: (lr, frm) for s, lr, frm in phases}
    for i in range(steps):
        if i in starts:
            lr, frm = starts[i]
            if frm == "init":
                model.load_state_dict(init)
            elif frm == "best" and best[1] is not None:
                model.load_state_dict(best[1])
            opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
            n = steps - i
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda k, n=n: min(1.0, (k + 1) / max(1, n // 20))
                * 0.5 * (1 + math.cos(math.pi * min(k, n) / n)))
        loss = wl.loss(model, wl.batch(i, gen))
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        if (i + 1) % every == 0:
            v = wl.evaluate(model, "selection")["mse"]
            if v < best[0]:
                best = (v, copy.deepcopy(model.state_dict()), i + 1)
    final = wl.evaluate(model, "test")["mse"]
    assert best[1] is not None
    model.load_state_dict(best[1])
    return round(final, 3), round(wl.evaluate(model, "test")["mse"], 3), best[2]


if __name__ == "__main__":
    arms = {
        "0.0156 throughout": [(0, 0.0156, "init")],
        "restart at 300 from init, lr 1.5e-3": [(0, 0.0156, "init"), (300, 1.5e-3, "init")],
        "restart at 300 from init, lr 5e-4": [(0, 0.0156, "init"), (300, 5e-4, "init")],
        "at 300 from the best weights, lr 1.5e-3": [(0, 0.0156, "init"),
                                                     (300, 1.5e-3, "best")],
        "1.5e-3 throughout": [(0, 1.5e-3, "init")],
    }
    for name, phases in arms.items():
        print(f"{name:42s}", *(run(seed, phases) for seed in (0, 1)))
