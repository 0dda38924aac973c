"""Adam vs ClaraAdam on scikit-learn's digits from several initial learning rates.

The measurement behind docs/clara.md ("A first measurement"): MLP 64-64-10, batch 64,
20 epochs, 3 seeds. Run: ``python examples/clara_digits.py`` (needs the [bench] extra).
"""

from __future__ import annotations

import statistics

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from cadence.optim import ClaraAdam

LRS = (1e-4, 1e-3, 1e-2, 1e-1)
SEEDS = (0, 1, 2)
EPOCHS, BATCH = 20, 64


def data() -> tuple[torch.Tensor, ...]:
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=450, random_state=0)
    return (torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr),
            torch.tensor(xte, dtype=torch.float32), torch.tensor(yte))


def run(make_opt, seed: int) -> tuple[float, float]:
    """Test accuracy (%) and the final lr of one run."""
    xtr, ytr, xte, yte = data()
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = make_opt(model.parameters())
    gen = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr) - BATCH + 1, BATCH):
            idx = perm[i:i + BATCH]
            loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item() * 100
    return acc, opt.param_groups[0]["lr"]


def main() -> None:
    torch.set_num_threads(1)
    arms = {
        "Adam": lambda lr: lambda ps: torch.optim.Adam(ps, lr=lr),
        "ClaraAdam d=1e-3": lambda lr: lambda ps: ClaraAdam(ps, lr=lr, damping=1e-3),
        "ClaraAdam d=1e-2": lambda lr: lambda ps: ClaraAdam(ps, lr=lr, damping=1e-2),
    }
    print("| lr0 | " + " | ".join(arms) + " |")
    print("|---" * (len(arms) + 1) + "|")
    for lr in LRS:
        cells = []
        for make in arms.values():
            runs = [run(make(lr), s) for s in SEEDS]
            accs = [a for a, _ in runs]
            final = statistics.median(f for _, f in runs)
            cells.append(f"{statistics.mean(accs):.1f} ± {statistics.stdev(accs):.1f} "
                         f"(lr {final:.1e})")
        print(f"| {lr:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
