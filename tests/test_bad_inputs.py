"""One table of bad inputs over every public entry point.

Each row calls one entry point (``Regime``, ``observe``, ``step``, ``load_state_dict``,
``param_groups``, the schedules, configuration files, the ``cadence`` commands) with one bad
value and states the exception it must raise and the word its message must contain: the
argument (or flag, or configuration key) that is wrong. A new argument ships with its row.
Command-line rows raise :class:`CLIFailed` when the command exits non-zero, with what it
printed as the message.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch

import cadence
from cadence import Regime
from cadence import schedules as S
from cadence.regime.config import ConfigError


class CLIFailed(Exception):
    """A ``cadence`` command exited with a non-zero code; the message is what it printed."""


class Bad(NamedTuple):
    call: Callable[[Path], Any]
    error: type[BaseException]
    names: str  # the argument, flag or key the message must name


# -- small fixtures -------------------------------------------------------------------------
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8),
                               torch.nn.Linear(8, 2))


def adamw() -> torch.optim.Optimizer:
    return torch.optim.AdamW(cadence.param_groups(model(), lr=1e-3, weight_decay=0.1))


def regime(**kw: Any) -> Regime:
    return Regime(adamw(), **{"total_steps": 100, **kw})


def stepped(steps: int = 3, **kw: Any) -> tuple[torch.nn.Module, Regime]:
    m = model()
    r = Regime(torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
               **{"total_steps": 100, "preset": "cosine", **kw})
    for _ in range(steps):
        loss = m(torch.ones(2, 4)).pow(2).mean()
        loss.backward()
        r.step(loss)
    return m, r


def config(tmp: Path, text: str, suffix: str = ".yaml") -> Regime:
    path = tmp / f"regime{suffix}"
    path.write_text(text, encoding="utf-8")
    return Regime.from_config(torch.optim.SGD(model().parameters(), lr=0.1), path)


def cli(*argv: str) -> None:
    from cadence.cli import main

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(list(argv))
    except SystemExit as exit_:  # argparse
        code = exit_.code
    if code:
        raise CLIFailed(out.getvalue())


def run_folder(tmp: Path) -> Path:
    folder = tmp / "run"
    r = Regime(torch.optim.SGD(model().parameters(), lr=0.1), preset="constant",
               log_dir=folder)
    r.close()
    return folder


def corrupt(tmp: Path, name: str, data: bytes) -> Path:
    folder = run_folder(tmp)
    (folder / name).write_bytes(data)
    return folder


def state_from(tmp: Path, **kw: Any) -> dict[str, Any]:
    return stepped(**kw)[1].state_dict()


def step_with(loss: Callable[[torch.nn.Module], Any]) -> None:
    m, r = stepped(0)
    r.step(loss(m))


def no_grad_loss(m: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return m(torch.ones(2, 4)).mean()


# -- the table ------------------------------------------------------------------------------
CASES: dict[str, Bad] = {
    # Regime(...)
    "optimizer not an optimizer": Bad(lambda t: Regime(object()), TypeError, "optimizer"),
    "optimizer without parameters": Bad(
        lambda t: Regime(torch.optim.SGD([{"params": []}], lr=0.1)), ValueError, "optimizer"),
    "total_steps 0": Bad(lambda t: regime(total_steps=0), ValueError, "total_steps"),
    "total_steps float": Bad(lambda t: regime(total_steps=1.5), ValueError, "total_steps"),
    "total_steps string": Bad(lambda t: regime(total_steps="100"), ValueError, "total_steps"),
    "total_steps a bool": Bad(lambda t: regime(total_steps=True), ValueError,
                                  "total_steps"),
    "preset unknown": Bad(lambda t: regime(preset="cosin"), ValueError, "preset"),
    "preset not a string": Bad(lambda t: regime(preset=3), TypeError, "preset"),
    "cosine without total_steps": Bad(lambda t: Regime(adamw(), preset="cosine"), ValueError,
                                      "total_steps"),
    "controllers a bare name": Bad(lambda t: regime(controllers="plateau"), TypeError,
                                   "controllers"),
    "controllers unknown name": Bad(lambda t: regime(controllers=["platea"]), ValueError,
                                    "controllers"),
    "controllers not a controller": Bad(lambda t: regime(controllers=[3]), TypeError,
                                        "controllers"),
    "signals a bare name": Bad(lambda t: regime(signals="drift"), TypeError, "signals"),
    "signals unknown name": Bad(lambda t: regime(signals=["drfit"]), ValueError, "signals"),
    "schedule not callable": Bad(lambda t: regime(schedule=3), TypeError, "schedule"),
    "schedule unknown group": Bad(lambda t: regime(schedule={"haed": S.constant()}),
                                  ValueError, "schedule"),
    "schedule leaves a group out": Bad(
        lambda t: regime(preset="cosine", schedule={"deca*": S.cosine(100)}), ValueError,
        "schedule"),
    "schedule pattern matches nothing": Bad(
        lambda t: regime(schedule={"x*": S.constant(), "*": S.constant()}), ValueError,
        "schedule"),
    "log_dir not a path": Bad(lambda t: regime(log_dir=3), TypeError, "log_dir"),
    "log_dir a file": Bad(lambda t: regime(log_dir=t / "f.txt") if (t / "f.txt").write_text("x")
                          else None, NotADirectoryError, "log_dir"),
    "warmup_steps negative": Bad(lambda t: regime(warmup_steps=-1), ValueError, "warmup_steps"),
    "warmup_steps beyond total": Bad(lambda t: regime(warmup_steps=200), ValueError,
                                     "warmup_steps"),
    "bounds not a mapping": Bad(lambda t: regime(bounds=[("lr", (0, 1))]), TypeError, "bounds"),
    "bounds unknown knob": Bad(lambda t: regime(bounds={"speed": (0, 1)}), ValueError,
                               "bounds"),
    "bounds not a pair": Bad(lambda t: regime(bounds={"lr": 0.1}), TypeError, "bounds"),
    "bounds strings": Bad(lambda t: regime(bounds={"lr": ("1e-6", "1e-3")}), TypeError,
                          "bounds"),
    "bounds reversed": Bad(lambda t: regime(bounds={"lr": (1.0, 0.5)}), ValueError, "bounds"),
    "bounds negative": Bad(lambda t: regime(bounds={"lr": (-1.0, 1.0)}), ValueError, "bounds"),
    "bounds momentum past 1": Bad(lambda t: regime(bounds={"momentum": (0, 1.5)}), ValueError,
                                  "bounds"),
    "bounds exclude the base lr": Bad(lambda t: regime(bounds={"lr": (1.0, 2.0)}), ValueError,
                                      "bounds"),
    "max_change below 1": Bad(lambda t: regime(max_change=0.9), ValueError, "max_change"),
    "max_change a bool": Bad(lambda t: regime(max_change=True), ValueError, "max_change"),
    "max_lr_spread below 1": Bad(lambda t: regime(max_lr_spread=0.5), ValueError,
                                 "max_lr_spread"),
    "smoothing 1": Bad(lambda t: regime(smoothing=1.0), ValueError, "smoothing"),
    "clip_norm negative": Bad(lambda t: regime(clip_norm=-1.0), ValueError, "clip_norm"),
    "clip_norm unknown word": Bad(lambda t: regime(clip_norm="auto"), TypeError, "clip_norm"),
    "adaptive clip without guard": Bad(lambda t: regime(clip_norm="adaptive", guard=False),
                                       ValueError, "clip_norm"),
    "scaler not a scaler": Bad(lambda t: regime(scaler=3), TypeError, "scaler"),
    "accumulation_steps 0": Bad(lambda t: regime(accumulation_steps=0), ValueError,
                                "accumulation_steps"),
    "metrics_every 0": Bad(lambda t: regime(metrics_every=0), ValueError, "metrics_every"),
    "snapshot_every negative": Bad(lambda t: regime(snapshot_every=-1), ValueError,
                                   "snapshot_every"),
    "guard a string": Bad(lambda t: regime(guard="yes"), TypeError, "guard"),
    "guard typo": Bad(lambda t: regime(guard={"lr_cutt": 0.5}), TypeError, "guard"),
    "guard bad value": Bad(lambda t: regime(guard={"lr_cut": 5}), ValueError, "guard"),
    "guard value a string": Bad(lambda t: regime(guard={"lr_cut": "half"}), TypeError,
                                "lr_cut"),
    "seed a float": Bad(lambda t: regime(seed=1.5), ValueError, "seed"),
    "seed a string": Bad(lambda t: regime(seed="a"), ValueError, "seed"),
    # regime.observe(...)
    "observe positional": Bad(lambda t: regime().observe(0.3), TypeError, "observe"),
    "observe nothing": Bad(lambda t: regime().observe(), ValueError, "observe"),
    "observe typo": Bad(lambda t: regime().observe(val_los=0.3), ValueError, "val_los"),
    "observe nan": Bad(lambda t: regime().observe(val_loss=float("nan")), ValueError,
                       "val_loss"),
    "observe numpy inf": Bad(lambda t: regime().observe(val_loss=np.float32("inf")),
                             ValueError, "val_loss"),
    "observe a string": Bad(lambda t: regime().observe(val_loss="0.3"), TypeError, "val_loss"),
    "observe a vector": Bad(lambda t: regime().observe(val_loss=torch.ones(3)), ValueError,
                            "val_loss"),
    # regime.step(...), replan(...), values(...)
    "step a float": Bad(lambda t: step_with(lambda m: 0.3), TypeError, "loss"),
    "step a vector": Bad(lambda t: step_with(lambda m: m(torch.ones(2, 4))), ValueError,
                         "loss"),
    "step without grad": Bad(lambda t: step_with(no_grad_loss), ValueError, "loss"),
    "step before backward": Bad(lambda t: step_with(lambda m: m(torch.ones(2, 4)).mean()),
                                RuntimeError, "backward"),
    "replan into the past": Bad(lambda t: stepped(5)[1].replan(3), ValueError, "total_steps"),
    "replan not an int": Bad(lambda t: regime().replan(2.5), ValueError, "total_steps"),
    "values unknown group": Bad(lambda t: regime().values("nope"), ValueError, "group"),
    # regime.load_state_dict(...)
    "state not a mapping": Bad(lambda t: regime().load_state_dict([1, 2]), ValueError, "state"),
    "state without fingerprint": Bad(lambda t: regime().load_state_dict({"x": 1}), ValueError,
                                     "state"),
    "state of another version": Bad(
        lambda t: stepped(0)[1].load_state_dict({**state_from(t), "version": 99}), ValueError,
        "version"),
    "state of another preset": Bad(
        lambda t: stepped(0, preset="constant")[1].load_state_dict(state_from(t)), ValueError,
        "preset"),
    "state of another optimizer": Bad(
        lambda t: Regime(torch.optim.Adam(model().parameters()), total_steps=100)
        .load_state_dict(Regime(torch.optim.AdamW(model().parameters()), total_steps=100)
                         .state_dict()), ValueError, "optimizer"),
    "state past the new horizon": Bad(
        lambda t: stepped(0, total_steps=2)[1].load_state_dict(state_from(t)), ValueError,
        "total_steps"),
    # cadence.param_groups(...)
    "param_groups model not a module": Bad(lambda t: cadence.param_groups(object(), lr=0.1),
                                           TypeError, "model"),
    "param_groups lr negative": Bad(lambda t: cadence.param_groups(model(), lr=-0.1),
                                    ValueError, "lr"),
    "param_groups lr a string": Bad(lambda t: cadence.param_groups(model(), lr="0.1"),
                                    TypeError, "lr"),
    "param_groups weight_decay nan": Bad(
        lambda t: cadence.param_groups(model(), lr=0.1, weight_decay=float("nan")), ValueError,
        "weight_decay"),
    "param_groups layer_decay 1.5": Bad(
        lambda t: cadence.param_groups(model(), lr=0.1, layer_decay=1.5), ValueError,
        "layer_decay"),
    "param_groups no_decay a string": Bad(
        lambda t: cadence.param_groups(model(), lr=0.1, no_decay="bias"), TypeError,
        "no_decay"),
    "param_groups pattern matches nothing": Bad(
        lambda t: cadence.param_groups(model(), lr=0.1, groups={"head": {"pattern": "hed"}}),
        ValueError, "groups"),
    "param_groups unknown spec key": Bad(
        lambda t: cadence.param_groups(model(), lr=0.1,
                                       groups={"head": {"pattern": "2", "lr_scael": 2}}),
        ValueError, "groups"),
    "param_groups block_pattern without index": Bad(
        lambda t: cadence.param_groups(model(), lr=0.1, block_pattern=r"\d+"), ValueError,
        "block_pattern"),
    # cadence.schedules
    "cosine total_steps 0": Bad(lambda t: S.cosine(0), ValueError, "total_steps"),
    "cosine floor 2": Bad(lambda t: S.cosine(100, floor=2.0), ValueError, "floor"),
    "exponential gamma 1.5": Bad(lambda t: S.exponential(gamma=1.5), ValueError, "gamma"),
    "exponential gamma a string": Bad(lambda t: S.exponential(gamma="0.9"), TypeError, "gamma"),
    "step every 0": Bad(lambda t: S.step(every=0), ValueError, "every"),
    "warmup negative": Bad(lambda t: S.warmup(-5), ValueError, "warmup_steps"),
    "warmup_cosine warmup beyond total": Bad(
        lambda t: S.warmup_cosine(total_steps=10, warmup_steps=20), ValueError, "warmup_steps"),
    "from_dict unknown kind": Bad(lambda t: S.from_dict({"kind": "cosin"}), ValueError, "kind"),
    "to_torch mapping leaves a group out": Bad(
        lambda t: S.to_torch(adamw(), {"deca*": S.constant()}), ValueError, "no_decay"),
    # configuration files
    "config empty": Bad(lambda t: config(t, ""), ConfigError, "empty"),
    "config unknown key": Bad(lambda t: config(t, "total_step: 10\n"), ConfigError,
                              "total_step"),
    "config preset": Bad(lambda t: config(t, "preset: cosin\n"), ConfigError, "preset"),
    "config total_steps": Bad(lambda t: config(t, "total_steps: -1\n"), ConfigError,
                              "total_steps"),
    "config cosine without total_steps": Bad(lambda t: config(t, "preset: cosine\n"),
                                             ConfigError, "total_steps"),
    "config guard typo": Bad(lambda t: config(t, "guard: {lr_cutt: 0.5}\n"), ConfigError,
                             "lr_cutt"),
    "config guard value": Bad(lambda t: config(t, "guard: {lr_cut: 5}\n"), ConfigError,
                              "lr_cut"),
    "config guard value a string": Bad(lambda t: config(t, "guard: {lr_cut: half}\n"),
                                       ConfigError, "lr_cut"),
    "config controller params not a table": Bad(
        lambda t: config(t, "controllers: [{name: plateau, params: 3}]\n"), ConfigError,
        "params"),
    "config controllers a bare name": Bad(lambda t: config(t, "controllers: plateau\n"),
                                          ConfigError, "controllers"),
    "config controller parameter": Bad(
        lambda t: config(t, "controllers: [{name: plateau, patiense: 3}]\n"), ConfigError,
        "patiense"),
    "config bounds reversed": Bad(lambda t: config(t, "bounds: {lr: [1.0e-1, 1.0e-3]}\n"),
                                  ConfigError, "bounds"),
    "config bounds exclude the lr": Bad(lambda t: config(t, "bounds: {lr: [1e-6, 1e-3]}\n"),
                                        ConfigError, "bounds"),
    "config schedule group": Bad(
        lambda t: config(t, "schedule: {head: {kind: constant}}\n"), ConfigError, "schedule"),
    "config schedule a callable": Bad(
        lambda t: config(t, '{"schedule": {"kind": "callable", "repr": "<fn>"}}', ".json"),
        ConfigError, "schedule"),
    "config smoothing": Bad(lambda t: config(t, "smoothing = 2\n", ".toml"), ConfigError,
                            "smoothing"),
    "config suffix": Bad(lambda t: config(t, "preset: auto\n", ".ini"), ConfigError, "suffix"),
    "config not a table": Bad(lambda t: config(t, "[1, 2]", ".json"), ConfigError,
                              "top level"),
    "config YAML object tag": Bad(lambda t: config(t, "preset: !!python/name:os.system\n"),
                                  ConfigError, "cannot parse"),
    # the cadence command
    "cli unknown command": Bad(lambda t: cli("nope"), CLIFailed, "nope"),
    "schedule --lr negative": Bad(lambda t: cli("schedule", "cosine(10)", "--lr", "-1"),
                                  CLIFailed, "--lr"),
    "schedule --steps 0": Bad(lambda t: cli("schedule", "cosine(10)", "--steps", "0"),
                              CLIFailed, "--steps"),
    "schedule spec": Bad(lambda t: cli("schedule", "__import__('os')"), CLIFailed,
                         "schedule spec"),
    "report missing folder": Bad(lambda t: cli("report", str(t / "nope")), CLIFailed,
                                 "RUN_DIR"),
    "report -o a folder": Bad(lambda t: cli("report", str(run_folder(t)), "-o", str(t)),
                              CLIFailed, "-o"),
    "report corrupt config.json": Bad(
        lambda t: cli("report", str(corrupt(t, "config.json", b"{bad"))), CLIFailed,
        "config.json"),
    "report binary events": Bad(
        lambda t: cli("report", str(corrupt(t, "events.jsonl", bytes(range(256))))),
        CLIFailed, "events.jsonl"),
    "bench report missing db": Bad(lambda t: cli("bench", "report", "--db", str(t / "x.db")),
                                   CLIFailed, "--db"),
    "bench unknown suite": Bad(lambda t: cli("bench", "--suite", "nope", "--db",
                                             str(t / "x.db")), CLIFailed, "suite"),
    "bench overhead --repeats 0": Bad(lambda t: cli("bench", "overhead", "--repeats", "0"),
                                      CLIFailed, "--repeats"),
    "bench unknown action": Bad(lambda t: cli("bench", "reprot"), CLIFailed, "reprot"),
    "demo --lr negative": Bad(lambda t: cli("demo", "--lr", "-1", "--out", str(t / "d"),
                                            "--no-dashboard"), CLIFailed, "lr"),
    "demo --steps 5": Bad(lambda t: cli("demo", "--steps", "5", "--out", str(t / "d"),
                                        "--no-dashboard"), CLIFailed, "steps"),
}


def test_the_table_is_large() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = CASES[case]
    with pytest.raises(bad.error) as caught:
        bad.call(tmp_path)
    message = str(caught.value)
    assert bad.names in message, f"{case}: the message does not name {bad.names!r}: {message}"
    assert os.getcwd() == str(tmp_path)


@pytest.mark.parametrize("value", [np.int64(100), np.int32(100)])
def test_numpy_integers_are_integers(value: Any) -> None:
    assert regime(total_steps=value, warmup_steps=np.int64(5), seed=np.int64(1)).total_steps == 100


def test_numpy_floats_are_numbers() -> None:
    r = regime(max_change=np.float64(1.2), smoothing=np.float32(0.5),
               bounds={"lr": (np.float64(1e-5), np.float32(1.0))})
    r.observe(val_loss=np.float32(0.3))
    assert r.metrics["val_loss"] == pytest.approx(0.3)
    groups = cadence.param_groups(model(), lr=np.float32(1e-3), weight_decay=np.float64(0.1))
    assert all(isinstance(g["lr"], float) for g in groups)
    assert S.cosine(np.int64(100), floor=np.float32(0.1))(100) == pytest.approx(0.1)


def test_param_groups_leave_weight_decay_to_the_optimizer() -> None:
    opt = torch.optim.AdamW(cadence.param_groups(model(), lr=1e-3))
    decay = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert decay == {"decay": 0.01, "no_decay": 0.0}  # AdamW's own default is kept
