"""Train the learned controller's policy with PPO (stable-baselines3) and export it.

``train(...)`` runs PPO on :class:`~cadence.learn.env.LRControlEnv` (one environment per
process), checkpoints to ``out/ppo_latest.zip`` and ``out/policy.json`` every
``checkpoint_every`` timesteps, appends one line per rollout to ``out/progress.jsonl``
and resumes from the checkpoint when called again with the same ``out``. The exported
policy is the actor alone (its Linear/Tanh layers and the action head) as plain numbers
in JSON, which ``cadence.controllers.learned.load_policy`` reads with torch alone.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cadence.controllers.learned import FEATURES
from cadence.learn.env import ACTIONS, DECISIONS, LR_RANGE, LRControlEnv

#: PPO settings (stable-baselines3 names). γ = 1: the rewards telescope to the final value.
PPO_KWARGS: dict[str, Any] = {
    "n_steps": 200, "batch_size": 100, "n_epochs": 10, "gamma": 1.0, "gae_lambda": 0.95,
    "ent_coef": 0.01, "learning_rate": 3e-4, "clip_range": 0.2,
}
NET_ARCH = (64, 64)
#: Initial logit bonus of the "keep" action (×1): the untrained policy follows the
#: schedule with probability ≈ 0.65 and leaves it only where PPO finds evidence.
KEEP_PRIOR = 2.0


def _make_env(workloads: Sequence[str], steps: int | Mapping[str, int], seed: int) -> Any:
    def build() -> LRControlEnv:
        env = LRControlEnv(workloads, steps=steps)
        env.reset(seed=seed)
        return env

    return build


def export_policy(model: Any, path: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write the PPO actor of ``model`` (an SB3 ``PPO`` with an MLP policy) as the runtime's
    JSON policy file, with ``meta`` (command, seeds, workloads, …) recorded in it."""
    policy = model.policy
    linears = [m for m in policy.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)]
    linears.append(policy.action_net)
    layers = [{"weight": lin.weight.detach().double().tolist(),
               "bias": lin.bias.detach().double().tolist()} for lin in linears]
    spec = {**dict(meta), "features": list(FEATURES), "layers": layers}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def train(
    workloads: Sequence[str],
    timesteps: int,
    out: str | Path,
    *,
    steps: int | Mapping[str, int] = 600,
    seed: int = 0,
    envs: int = 2,
    checkpoint_every: int = 2000,
    progress: bool = True,
    command: str | None = None,
    log: Any = print,
) -> Path:
    """Train (or resume) a policy for ``timesteps`` decisions in total; returns the path of
    ``out/policy.json``."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    fns = [_make_env(workloads, steps, seed * 1000 + i) for i in range(envs)]
    inner = SubprocVecEnv(fns, start_method="forkserver") if envs > 1 else DummyVecEnv(fns)
    vec = VecMonitor(inner, filename=str(folder / "monitor"),
                     info_keywords=("workload", "lr", "seed"))
    latest = folder / "ppo_latest.zip"
    if latest.exists():
        model = PPO.load(latest, env=vec, device="cpu")
        log(f"[cadence learn] resuming from {latest} at {model.num_timesteps} timesteps")
    else:
        model = PPO("MlpPolicy", vec, seed=seed, device="cpu", verbose=0,
                    policy_kwargs={"net_arch": {"pi": list(NET_ARCH), "vf": list(NET_ARCH)}},
                    **PPO_KWARGS)
        with torch.no_grad():
            bias: Any = model.policy.action_net.bias
            bias[ACTIONS.index(1.0)] += KEEP_PRIOR
    started = time.time()
    meta: dict[str, Any] = {
        "format": 1, "actions": list(ACTIONS), "decisions": DECISIONS,
        "trained_on": list(workloads), "episode_steps": steps, "lr_range": list(LR_RANGE),
        "seed": seed, "envs": envs, "timesteps": timesteps, "ppo": PPO_KWARGS,
        "net_arch": list(NET_ARCH), "keep_prior": KEEP_PRIOR,
        "command": command or "cadence learn " + " ".join(sys.argv[2:]),
        "software": {"torch": torch.__version__, "python": platform.python_version()},
    }

    class Checkpoint(BaseCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.last = model.num_timesteps

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            buf = getattr(self.model, "ep_info_buffer", None) or []
            rets = [float(e["r"]) for e in buf]
            record = {"timesteps": int(self.model.num_timesteps),
                      "wall_s": round(time.time() - started, 1),
                      "mean_return_last100": sum(rets) / len(rets) if rets else None,
                      "episodes_in_buffer": len(rets)}
            with open(folder / "progress.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            if self.model.num_timesteps - self.last >= checkpoint_every:
                self.last = self.model.num_timesteps
                self.model.save(latest)
                export_policy(self.model, folder / "policy.json",
                              {**meta, "trained_timesteps": int(self.model.num_timesteps)})

    remaining = max(0, timesteps - model.num_timesteps)
    if remaining:
        model.learn(total_timesteps=remaining, reset_num_timesteps=False,
                    progress_bar=progress, callback=Checkpoint())
    model.save(latest)
    vec.close()
    meta["trained_timesteps"] = int(model.num_timesteps)
    meta["wall_s_last_session"] = round(time.time() - started, 1)
    path = export_policy(model, folder / "policy.json", meta)
    log(f"[cadence learn] {model.num_timesteps} timesteps; policy written to {path}")
    return path
