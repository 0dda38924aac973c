"""Quickstart: wrap an AdamW optimizer in a cadence Regime and train MNIST-1D offline.

Run: python examples/quickstart.py  (about 15 s on a laptop CPU), then
     cadence report runs/quickstart     (writes runs/quickstart/dashboard.html)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import cadence
from cadence.bench.workloads import get_workload

STEPS = 1500


def main() -> None:
    workload = get_workload("mnist1d-cnn")  # regenerated offline by the mnist1d package
    torch.manual_seed(0)
    model = workload.make_model()

    groups = cadence.param_groups(model, lr=3e-3, weight_decay=0.01)  # no decay on biases
    optimizer = torch.optim.AdamW(groups)
    regime = cadence.Regime(optimizer, total_steps=STEPS, log_dir="runs/quickstart")

    gen = torch.Generator().manual_seed(0)
    for step in range(STEPS):
        x, y = workload.batch(step, gen)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        regime.step(loss)  # guard, adapt, optimizer.step(), zero_grad()
        if (step + 1) % 250 == 0:
            val = workload.evaluate(model, "selection")
            regime.observe(val_loss=val["loss"], val_acc=val["acc"])
            print(f"step {step + 1:5d}  loss {loss.item():.3f}  val acc {val['acc']:.3f}  "
                  f"lr {optimizer.param_groups[0]['lr']:.2e}")
    regime.close()

    print(f"test accuracy: {workload.evaluate(model, 'test')['acc']:.3f}")
    for event in regime.events[:5]:  # every change, with who made it and why
        change = f"{event.group}/{event.knob} {event.old} -> {event.new}" if event.knob \
            else event.kind
        print(f"  step {event.step}: {change} [{event.source}] {event.reason}")
    print("dashboard: cadence report runs/quickstart")


if __name__ == "__main__":
    main()
