"""Every Python block in docs/*.md runs as written.

The blocks of one page run in order in one namespace (a page builds on its earlier blocks),
in a temporary folder. Where a page leaves something to the reader (``model``, ``loader``,
``loss_fn``, ``evaluate``, ``optimizer``, a ``regime`` that has run, ``T``/``N``), the
namespace provides a small one: a two-module network with a ``backbone`` and a ``head``
trained on a few random batches. A block that needs what a test cannot have (several
processes, a Lightning or Hugging Face trainer) is preceded in the page by the comment
``<!-- docs-test: skip (why) -->``; ``SKIPPED`` below pins that list so it stays short.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"(?P<marker><!-- docs-test: skip \((?P<why>[^)]*)\) -->\s*\n)?"
                   r"```python\n(?P<code>.*?)```", re.S)
#: The blocks the pages mark as skipped: (page, first line of the block).
SKIPPED = {
    ("distributed.md", "model = torch.nn.parallel.DistributedDataParallel(model)"),
    ("integrations.md", "from cadence.integrations.lightning import CadenceCallback"),
    ("integrations.md", "from cadence.integrations.hf import CadenceTrainerCallback"),
}


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """``(line, code, skip reason or None)`` of each Python block of ``page``."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start("code")) + 1, m.group("code"), m.group("why"))
            for m in BLOCK.finditer(text)]


PAGES = sorted(p for p in DOCS.glob("*.md") if blocks(p))


class Net(nn.Module):
    """The reader's model: a small backbone and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(),
                                      nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def reader_namespace(log_dir: str = "runs/exp1") -> dict[str, Any]:
    """What the pages leave to the reader, small enough to run in a second (a run folder
    a page may read; a page that starts that run itself gets another one, since an
    existing run folder is refused)."""
    import cadence

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    loader = [(torch.randn(16, 8, generator=gen), torch.randint(0, 3, (16,), generator=gen))
              for _ in range(12)]
    loss_fn = nn.functional.cross_entropy
    model = Net()

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return float(sum(loss_fn(m(x), y) for x, y in loader[:2]) / 2)

    head = {"head": {"pattern": "head", "lr_scale": 10.0}}  # groups head.decay, decay, ...
    optimizer = torch.optim.AdamW(cadence.param_groups(model, lr=3e-4, weight_decay=0.1,
                                                       groups=head))
    regime = cadence.Regime(optimizer, total_steps=100, log_dir=log_dir)
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        regime.step(loss)
    return {"__name__": "docs_example", "torch": torch, "cadence": cadence, "nn": nn,
            "model": model, "loader": loader, "loss_fn": loss_fn, "evaluate": evaluate,
            "optimizer": optimizer, "regime": regime, "T": 100, "N": 100}


def test_the_skip_list_is_the_pages_markers() -> None:
    marked = {(p.name, code.splitlines()[0]) for p in PAGES
              for _, code, why in blocks(p) if why is not None}
    assert marked == SKIPPED


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pytest.importorskip("matplotlib")  # schedules.md plots
    starts_exp1 = 'log_dir="runs/exp1"' in page.read_text(encoding="utf-8")
    namespace = reader_namespace("runs/reader" if starts_exp1 else "runs/exp1")
    ran = 0
    for line, code, why in blocks(page):
        if why is not None:
            continue
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)  # noqa: S102
        except Exception as err:
            raise AssertionError(f"docs/{page.name} block at line {line} fails: "
                                 f"{type(err).__name__}: {err}") from err
        ran += 1
    namespace["regime"].close()
    assert ran or page.name in {p for p, _ in SKIPPED}
    assert os.getcwd() == str(tmp_path)
