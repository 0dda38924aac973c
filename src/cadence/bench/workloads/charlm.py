"""Character-level language model on the running interpreter's standard library.

The corpus is every top-level ``*.py`` file of ``sysconfig.get_paths()["stdlib"]`` in
sorted order: files at sorted positions ≡ 3 (mod 10) form the selection split, ≡ 7 the
test split, the rest train. That list is the same on every machine with the same Python
minor version. Characters map to a fixed 98-symbol vocabulary (tab, newline, printable
ASCII, one "other" symbol), so the vocabulary does not depend on the files either.
The model is a 2-layer pre-norm causal transformer (d = 128, 4 heads, context 64).
"""

from __future__ import annotations

import math
import os
import sysconfig
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Workload, cached_arrays

VOCAB = 98
CONTEXT = 64


def corpus_files() -> dict[str, list[str]]:
    """Sorted stdlib file names per split."""
    root = sysconfig.get_paths()["stdlib"]
    names = sorted(f for f in os.listdir(root) if f.endswith(".py"))
    splits: dict[str, list[str]] = {"train": [], "selection": [], "test": []}
    for i, name in enumerate(names):
        key = {3: "selection", 7: "test"}.get(i % 10, "train")
        splits[key].append(os.path.join(root, name))
    return splits


def encode(text: bytes) -> np.ndarray:
    """Bytes → ids: tab 0, newline 1, printable ASCII 32..126 → 2..96, anything else 97."""
    b = np.frombuffer(text, dtype=np.uint8).astype(np.int16)
    ids = np.full(b.shape, 97, dtype=np.int16)
    ids[b == 9] = 0
    ids[b == 10] = 1
    printable = (b >= 32) & (b <= 126)
    ids[printable] = b[printable] - 30
    return ids.astype(np.uint8)


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """nanoGPT-style: token + learned position embeddings, pre-norm blocks, linear head."""

    def __init__(self, d: int = 128, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d)
        self.pos = nn.Embedding(CONTEXT, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, VOCAB)
        for p in self.modules():
            if isinstance(p, (nn.Linear, nn.Embedding)):
                nn.init.normal_(p.weight, std=0.02)
        for blk in self.blocks:  # GPT-2 scaled init of residual projections
            nn.init.normal_(cast(Block, blk).proj.weight, std=0.02 / math.sqrt(2 * layers))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


class CharLM(Workload):
    name = "charlm"
    task = "lm"
    primary = "loss"
    higher_is_better = False
    description = "stdlib source, 2-layer causal transformer d=128, context 64"
    steps = 1500
    batch_size = 16
    eval_every = 100
    eval_windows = 128

    def __init__(self) -> None:
        self.text: dict[str, torch.Tensor] = {}

    def prepare(self) -> None:
        if self.text:
            return
        files = corpus_files()

        def build() -> dict[str, np.ndarray]:
            out = {}
            for split, paths in files.items():
                chunks = []
                for p in paths:
                    with open(p, "rb") as f:
                        chunks.append(encode(f.read()))
                out[split] = np.concatenate(chunks)
            return out

        key = {"v": 1, "files": {k: [os.path.basename(p) for p in v] for k, v in files.items()}}
        key["sizes"] = [os.path.getsize(p) for v in files.values() for p in v]
        arrays = cached_arrays("charlm", key, build)
        self.text = {k: torch.as_tensor(v.astype(np.int64)) for k, v in arrays.items()}

    def make_model(self) -> nn.Module:
        return CharTransformer()

    def batch(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.prepare()
        data = self.text["train"]
        starts = torch.randint(0, data.numel() - CONTEXT - 1, (self.batch_size,), generator=gen)
        return self._windows(data, starts)

    @staticmethod
    def _windows(data: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offs = starts[:, None] + torch.arange(CONTEXT + 1)
        chunk = data[offs]
        return chunk[:, :-1], chunk[:, 1:]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        self.prepare()
        data = self.text[split]
        # evenly spaced, fixed windows: identical for every run
        starts = torch.linspace(0, data.numel() - CONTEXT - 2, self.eval_windows).long()
        x, y = self._windows(data, starts)
        was_training = model.training
        model.eval()
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1)).item()
        model.train(was_training)
        return {"loss": loss}
