"""Time ``cadence report`` on a large run folder (a measurement, not a test).

    python tests/scripts/report_timing.py [--steps 20000] [--events 1000] [--out DIR]

Writes a run folder in the format of docs/formats.md as a long run leaves it: 8 layer-wise
groups, a metrics line every 10 steps (4 knobs per group and 12 signals), and ``--events``
events of every kind (about 15 % skips and rollbacks, the rest changes, drifts and
re-plans), each carrying its 11 signals; then runs ``cadence report`` on it in a fresh
process and prints the wall time (interpreter start and imports included).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GROUPS = [f"layer{i}.{d}" for i in range(4) for d in ("decay", "no_decay")]
SIGNALS = ["loss", "grad_norm", "nonfinite", "loss_ema_short", "loss_ema_long", "loss_slope",
           "drift", "drift.z", "drift.ph", "drift.cusum", "clip_threshold", "drift.loss"]


def write_run(folder: Path, steps: int, n_events: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "preset": "auto", "total_steps": steps, "bounds": {}, "max_change": 1.1,
        "optimizer": {"class": "AdamW", "defaults": {"lr": 1e-3}},
        "groups": [{"name": g, "num_params": 1000, "depth": i // 2, "base": {"lr": 1e-3}}
                   for i, g in enumerate(GROUPS)],
        "running": {"controllers": ["scale", "drift_response"], "signals": SIGNALS},
        "cadence_version": "0.1.0", "started": "2026-01-01T00:00:00+00:00",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))

    def signals(step: int) -> dict[str, float]:
        return {name: math.exp(-step / steps) + 0.1 * rng.random() for name in SIGNALS}

    with (folder / "metrics.jsonl").open("w") as fh:
        for step in range(10, steps + 1, 10):
            lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
            values = {g: {"lr": lr * 0.8 ** (3 - i // 2), "momentum": 0.9, "beta2": 0.999,
                          "weight_decay": 0.1 if g.endswith(".decay") else 0.0}
                      for i, g in enumerate(GROUPS)}
            fh.write(json.dumps({"step": step, "time": 1000.0 + step * 0.05,
                                 "loss": 2.0 * math.exp(-step / 5000) + 0.05 * rng.random(),
                                 "values": values, "signals": signals(step)}) + "\n")
    kinds = (["skip"] * 12 + ["rollback"] * 3 + ["drift"] * 2 + ["replan"] * 1
             + ["change"] * 82)
    with (folder / "events.jsonl").open("w") as fh:
        for step in sorted(rng.sample(range(1, steps), n_events)):
            kind = rng.choice(kinds)
            change = kind in ("change", "drift")
            group = rng.choice(GROUPS) if change else None
            knob = rng.choice(["lr", "lr", "weight_decay", "momentum"]) if change else None
            old = rng.random() * 1e-3 if change else (steps if kind == "replan" else None)
            new = old * rng.choice([0.9, 1.1]) if change and old else (
                steps + 1000 if kind == "replan" else None)
            source = {"skip": "guard", "rollback": "guard", "replan": "regime"}.get(
                kind, rng.choice(["scale", "drift_response", "drift_response+scale"]))
            reason = (f"{kind} at step {step}: loss {rng.random():.3f} vs EMA "
                      f"{rng.random():.3f} → lr ×{rng.choice([0.9, 1.1])}")
            fh.write(json.dumps({"step": step, "group": group, "knob": knob, "old": old,
                                 "new": new, "source": source, "reason": reason,
                                 "signals": dict(list(signals(step).items())[:11]),
                                 "kind": kind}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="cadence-report-timing-")) / "run"
    write_run(folder, args.steps, args.events)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cadence", "report", str(folder)], check=True,
                   env={"CADENCE_NO_PROGRESS": "1", **__import__("os").environ})
    seconds = time.perf_counter() - start
    size = (folder / "dashboard.html").stat().st_size / 1e6
    print(f"cadence report: {args.steps:,} steps, {args.events:,} events: {seconds:.1f} s "
          f"({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
