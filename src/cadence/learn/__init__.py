"""cadence.learn: train the learned lr controller's policy (extra ``[learn]``).

``LRControlEnv`` (``cadence.learn.env``) is a gymnasium environment whose episodes are
short training runs of bench workloads; ``train`` (``cadence.learn.ppo``) runs PPO from
stable-baselines3 on it and exports the policy to the JSON file the runtime controller
``cadence.controllers.learned.LearnedLR`` reads with torch alone. Nothing here is imported
by ``import cadence``; this package needs gymnasium and stable-baselines3 only when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LRControlEnv", "export_policy", "train"]


def __getattr__(name: str) -> Any:
    if name == "LRControlEnv":
        from cadence.learn.env import LRControlEnv

        return LRControlEnv
    if name in ("train", "export_policy"):
        from cadence.learn import ppo

        return getattr(ppo, name)
    raise AttributeError(f"module 'cadence.learn' has no attribute {name!r}")
