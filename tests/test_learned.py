"""The learned lr controller: runtime (torch only), policy files, exact resume, identical
decisions on every rank, the training environment and a short PPO run (extra [learn])."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cadence.controllers.learned import (
    FEATURES,
    LearnedLR,
    PolicyNet,
    default_policy_path,
    load_policy,
)
from cadence.regime import Regime

ROOT = Path(__file__).parents[1]
SCRIPTS = Path(__file__).parent / "scripts"
ACTIONS = (0.5, 0.7, 1.0, 1.4, 2.0)


def write_random_policy(path: Path, seed: int = 0, hidden: int = 16) -> Path:
    """A random policy in the runtime's JSON format (no stable-baselines3 needed)."""
    torch.manual_seed(seed)
    net = PolicyNet([len(FEATURES), hidden, hidden, len(ACTIONS)])
    layers = [{"weight": m.weight.tolist(), "bias": m.bias.tolist()}
              for m in net.net if isinstance(m, torch.nn.Linear)]
    path.write_text(json.dumps({"features": list(FEATURES), "actions": list(ACTIONS),
                                "decisions": 20, "layers": layers}))
    return path


def tiny_run(regime_kwargs: dict, steps: int = 30, start: int = 0, state=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    regime = Regime(opt, **regime_kwargs)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        regime.load_state_dict(state["regime"])
    for i in range(start, steps):
        g = torch.Generator().manual_seed(100 + i)
        x = torch.randn(16, 4, generator=g)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        loss.backward()
        regime.step(loss)
        if i % 5 == 4:
            regime.observe(val_loss=float(loss.detach()) * 1.1)
    return model, opt, regime


# -- the policy file -------------------------------------------------------------------------

def test_shipped_policy_loads_with_its_provenance() -> None:
    net, meta = load_policy()
    assert default_policy_path().exists()
    for key in ("command", "seed", "trained_on", "timesteps", "actions", "decisions"):
        assert key in meta, key
    assert meta["command"].startswith("cadence learn")
    probs = torch.softmax(net(torch.zeros(1, len(FEATURES), dtype=torch.float64)), 1)
    assert probs.shape == (1, len(meta["actions"]))


def test_policy_file_must_match_the_features(tmp_path: Path) -> None:
    path = write_random_policy(tmp_path / "p.json")
    spec = json.loads(path.read_text())
    spec["features"] = spec["features"][:-1]
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="features"):
        load_policy(path)
    with pytest.raises(FileNotFoundError, match="cadence learn"):
        load_policy(tmp_path / "missing.json")


# -- the runtime -----------------------------------------------------------------------------

def test_learned_preset_runs_without_gymnasium_or_sb3() -> None:
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('gymnasium', 'stable_baselines3'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import torch, cadence\n"
        "m = torch.nn.Linear(4, 1); opt = torch.optim.AdamW(m.parameters(), lr=1e-3)\n"
        "r = cadence.Regime(opt, total_steps=60, preset='learned')\n"
        "for i in range(60):\n"
        "    x = torch.randn(8, 4); loss = ((m(x) - x.sum(1, keepdim=True))**2).mean()\n"
        "    loss.backward(); r.step(loss)\n"
        "c = [c for c in r.controllers if c.name == 'learned'][0]\n"
        "print(c._decided)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == 20  # every decision of the run was taken


def test_decisions_log_probabilities_and_respect_bounds(tmp_path: Path) -> None:
    policy = str(write_random_policy(tmp_path / "p.json"))
    ctrl = LearnedLR(policy=policy, greedy=False, seed=1, bounds=(0.5, 2.0), decisions=25)
    _, _, regime = tiny_run({"total_steps": 60, "preset": "cosine", "controllers": [ctrl]},
                            steps=60)
    events = [e for e in regime.events if e.source == "learned"]
    assert events and all("policy P(×0.5:" in e.reason for e in events)
    assert ctrl._decided == 25
    assert 0.5 - 1e-12 <= ctrl._mult <= 2.0 + 1e-12


def test_greedy_decisions_are_deterministic(tmp_path: Path) -> None:
    policy = str(write_random_policy(tmp_path / "p.json", seed=3))
    runs = []
    for _ in range(2):
        ctrl = LearnedLR(policy=policy, decisions=25)
        _, _, regime = tiny_run({"total_steps": 60, "preset": "cosine", "controllers": [ctrl]},
                                steps=60)
        runs.append([(e.step, e.new, e.reason) for e in regime.events])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("greedy", [True, False])
def test_exact_resume(tmp_path: Path, greedy: bool) -> None:
    policy = str(write_random_policy(tmp_path / "p.json", seed=2))

    def kwargs():
        return {"total_steps": 40, "preset": "learned", "snapshot_every": 7,
                "controllers": [LearnedLR(policy=policy, greedy=greedy, seed=4, decisions=30,
                                          name="extra")]}

    ref_model, _, ref = tiny_run(kwargs(), steps=40)
    model, opt, regime = tiny_run(kwargs(), steps=17)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "regime": regime.state_dict()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    split = len(regime.events)
    model2, _, regime2 = tiny_run(kwargs(), steps=40, start=17, state=state)
    for a, b in zip(ref_model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert regime2.values() == ref.values()
    tail = [e.to_dict() for e in ref.events[split:]]
    assert [e.to_dict() for e in regime2.events] == tail
    assert any(e.source == "extra" for e in ref.events[split:])  # decisions after the split


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_ranks_take_identical_learned_decisions(tmp_path: Path) -> None:
    policy = str(write_random_policy(tmp_path / "p.json", seed=7))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "RANK", "WORLD"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_free_port()}", str(SCRIPTS / "dist_learned.py"), str(tmp_path),
           policy]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["lrs"] == r1["lrs"]
    assert r0["events"] == r1["events"]
    assert len([e for e in r0["events"] if e["source"] == "sampler"]) > 0


# -- training (extra [learn]) ------------------------------------------------------------------

def test_environment_episode_matches_the_runtime_decisions() -> None:
    pytest.importorskip("gymnasium")
    from cadence.learn.env import LRControlEnv

    env = LRControlEnv(["quadratic"], steps=60)
    obs, info = env.reset(seed=0)
    assert obs.shape == (len(FEATURES),) and env.observation_space.contains(obs)
    total, n, done = 0.0, 0, False
    while not done:
        obs, reward, done, _, info = env.step(4)  # ×2 every decision
        total += reward
        n += 1
    assert n == 20 and env.ctrl._decided == 20
    assert "final" in info and env.step_count == 60
    assert env.ctrl._mult == pytest.approx(10.0)  # ×2 twenty times, cut at the bound 10


def test_short_ppo_run_trains_exports_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("stable_baselines3")
    from cadence.learn.ppo import train

    path = train(["quadratic"], 200, tmp_path, steps=40, envs=1, progress=False,
                 checkpoint_every=100, log=lambda *_: None)
    net, meta = load_policy(path)
    assert meta["trained_timesteps"] == 200 and meta["trained_on"] == ["quadratic"]
    assert (tmp_path / "ppo_latest.zip").exists() and (tmp_path / "progress.jsonl").exists()

    # the exported actor gives the same probabilities as stable-baselines3's policy
    from stable_baselines3 import PPO

    model = PPO.load(tmp_path / "ppo_latest.zip", device="cpu")
    obs = torch.randn(6, len(FEATURES))
    with torch.no_grad():
        sb3 = model.policy.get_distribution(obs).distribution.probs.double()
        ours = torch.softmax(net(obs.double()), dim=1)
    torch.testing.assert_close(ours, sb3, rtol=1e-5, atol=1e-6)

    # resuming continues the same run up to the new total
    train(["quadratic"], 400, tmp_path, steps=40, envs=1, progress=False,
          log=lambda *_: None)
    assert load_policy(tmp_path / "policy.json")[1]["trained_timesteps"] == 400

    # and the runtime controller drives a Regime from the exported file
    ctrl = LearnedLR(policy=str(path))
    tiny_run({"total_steps": 40, "preset": "cosine", "controllers": [ctrl]}, steps=40)
    assert ctrl._decided == 20


def test_learn_cli_parses_and_validates(capsys: pytest.CaptureFixture[str]) -> None:
    from cadence.cli import main
    from cadence.learn.cli import parse_steps

    assert parse_steps("600", ["a"]) == 600
    assert parse_steps("a=600,b=300", ["a", "b"]) == {"a": 600, "b": 300}
    with pytest.raises(ValueError, match="b"):
        parse_steps("a=600", ["a", "b"])
    assert main(["learn", "--workloads", "no-such-workload", "--timesteps", "1"]) == 2
    assert "unknown workloads" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_reproduces_the_shipped_training_command(tmp_path: Path) -> None:
    """The recorded command retrains the shipped policy (about half an hour on 2 cores);
    PPO on several processes is not bit-reproducible, so this checks that it runs to the
    recorded number of timesteps and writes a loadable policy."""
    pytest.importorskip("stable_baselines3")
    meta = load_policy()[1]
    args = meta["command"].split()[2:]
    if "--out" in args:
        i = args.index("--out")
        del args[i:i + 2]
    if "--export" in args:
        i = args.index("--export")
        del args[i:i + 2]
    from cadence.cli import main

    assert main(["learn", *args, "--out", str(tmp_path), "--no-progress"]) == 0
    assert load_policy(tmp_path / "policy.json")[1]["trained_timesteps"] >= meta["timesteps"]


def test_transfer_table_from_bench_rows(tmp_path: Path) -> None:
    from cadence.bench.db import ResultsDB
    from cadence.bench.runner import RunSpec, run_specs
    from cadence.learn.evaluate import analyse_transfer, transfer_table

    specs = [RunSpec("quadratic", m, lr, seed, 30, 10)
             for m, lrs in (("adamw-cosine", (1e-2, 1e-1)), ("cadence-auto", (1e-3, 1e-1)),
                            ("cadence-learned", (1e-3, 1e-1)))
             for lr in lrs for seed in (0, 1)]
    with ResultsDB(tmp_path / "r.sqlite") as db:
        counts = run_specs(specs, db, workers=0, log=lambda *_: None)
        rows = db.rows()
    assert counts["error"] == 0, [r["error"] for r in rows if r["status"] == "error"]
    info = analyse_transfer(rows)["quadratic"]
    assert info["oracle_seeds"] == 2
    learned = info["methods"]["cadence-learned"]
    assert learned["default_seeds"] == 2 and learned["runs"] == 4
    table = transfer_table(tmp_path / "r.sqlite", trained_on=["mnist1d-mlp"])
    assert "| quadratic (loss) | **no** |" in table
