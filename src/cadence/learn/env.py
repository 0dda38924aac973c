"""The training environment: one episode is one short training run of a bench workload.

Each episode builds a fresh model of a bench workload (drawn round-robin from the list),
an AdamW over ``cadence.param_groups`` at an initial lr drawn log-uniformly, and a
``cadence.Regime(preset="learned")`` whose :class:`~cadence.controllers.learned.LearnedLR`
takes its actions from the agent instead of its policy. So the features the agent sees
are computed by the very code that runs at deployment, from the same signals.

* observation: the controller's features (``cadence.controllers.learned.FEATURES``),
  computed at the step before a decision;
* action: the index of an lr factor in ``actions`` (default ×0.5, ×0.7, ×1, ×1.4, ×2),
  taken ``decisions`` times per run, on top of the preset's warmup + cosine;
* reward: the progress, between decisions, of the metric the user judges on the
  *selection* split (never test): ``10 × Δaccuracy`` for classification, ``−Δlog(loss)``
  otherwise. The rewards telescope, so an episode's return is the final value relative to
  the start (the paper's "final validation loss", with dense credit); a run that diverges
  ends the episode with reward −10.

Validation metrics reach the Regime through ``regime.observe`` every ``eval_every`` steps,
as in the bench runner (at ``min(workload.eval_every, steps // 10)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import cadence
from cadence.bench.workloads import get_workload
from cadence.controllers.learned import CLIP, FEATURES, LearnedLR

#: lr factors the policy chooses among, and decisions per run.
ACTIONS: tuple[float, ...] = (0.5, 0.7, 1.0, 1.4, 2.0)
DECISIONS = 20
#: initial lrs are drawn log-uniformly from this range (the scale-aware start replaces
#: those more than 3× off its default, so the policy also sees imperfect starts)
LR_RANGE = (1e-4, 1e-1)
DIVERGED_REWARD = -10.0


class LRControlEnv(gym.Env):  # type: ignore[misc]
    """Gymnasium environment over bench workloads (see the module docstring).

    Args:
        workloads: bench workload names, used round-robin over episodes.
        steps: training steps per episode, one number or one per workload.
        actions, decisions: the action set and decisions per run.
        lr_range: range of the log-uniform initial lr.
        threads: torch threads in this process.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        workloads: Sequence[str],
        steps: int | Mapping[str, int] = 600,
        actions: Sequence[float] = ACTIONS,
        decisions: int = DECISIONS,
        lr_range: tuple[float, float] = LR_RANGE,
        threads: int = 1,
    ) -> None:
        super().__init__()
        if not workloads:
            raise ValueError("LRControlEnv needs at least one workload")
        self.workloads = list(workloads)
        self.steps = {w: int(steps[w] if isinstance(steps, Mapping) else steps)
                      for w in self.workloads}
        self.actions = tuple(float(a) for a in actions)
        self.decisions = int(decisions)
        self.lr_range = lr_range
        torch.set_num_threads(threads)
        self._proto: dict[str, Any] = {}
        for name in self.workloads:
            wl = get_workload(name)
            wl.prepare()
            self._proto[name] = wl
        self.observation_space = gym.spaces.Box(-CLIP, CLIP, shape=(len(FEATURES),),
                                                dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self._episode = 0
        self.info: dict[str, Any] = {}

    # -- one training run ------------------------------------------------------------------
    def _new_run(self) -> None:
        rng = self.np_random
        name = self.workloads[self._episode % len(self.workloads)]
        self._episode += 1
        wl = get_workload(name)
        proto = self._proto[name]
        if hasattr(proto, "data"):  # share the prepared tensors, keep a fresh data order
            wl.data = proto.data  # type: ignore[attr-defined]
        wl.prepare()
        wl.steps = self.steps[name]
        seed = int(rng.integers(2**31 - 1))
        lo, hi = (math.log10(x) for x in self.lr_range)
        lr = float(10 ** rng.uniform(lo, hi))
        torch.manual_seed(seed)
        model = wl.make_model()
        wd = getattr(wl, "weight_decay", None)
        groups = cadence.param_groups(model, lr=lr, weight_decay=0.01 if wd is None else wd)
        self.optimizer = torch.optim.AdamW(groups)
        self.regime = cadence.Regime(self.optimizer, total_steps=wl.steps, preset="learned")
        ctrl = next(c for c in self.regime.controllers if isinstance(c, LearnedLR))
        ctrl.use_actions(self.actions, self.decisions)
        self.ctrl = ctrl
        self.wl, self.model = wl, model
        self.gen = torch.Generator().manual_seed(seed)
        self.step_count = 0
        self.eval_every = max(1, min(wl.eval_every, wl.steps // 10))
        self.diverged = False
        self.info = {"workload": name, "seed": seed, "lr": lr, "steps": wl.steps}

    def _metric(self) -> float:
        value = self.wl.evaluate(self.model, "selection")[self.wl.primary]
        floor = self.wl.metric_floor
        return max(float(value), floor) if floor is not None else float(value)

    def _reward(self, before: float, after: float) -> float:
        if not (math.isfinite(before) and math.isfinite(after)):
            return DIVERGED_REWARD
        if self.wl.higher_is_better:
            return 10.0 * (after - before)
        return math.log(max(before, 1e-12) / max(after, 1e-12))

    def _train_step(self) -> None:
        batch = self.wl.batch(self.step_count, self.gen)
        loss = self.wl.loss(self.model, batch)
        loss.backward()
        try:
            self.regime.step(loss)
        except Exception:  # e.g. the guard gave up: the run failed
            self.diverged = True
            return
        self.step_count += 1
        if not math.isfinite(float(loss.detach())) and any(
                not bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            self.diverged = True
            return
        if self.step_count % self.eval_every == 0:
            metrics = self.wl.evaluate(self.model, "selection")
            kwargs = {f"val_{k}": v for k, v in metrics.items()
                      if k in ("loss", "acc") and math.isfinite(v)}
            if kwargs:
                self.regime.observe(**kwargs)

    def _advance(self) -> None:
        """Train until the controller waits for a decision, the run ends or diverges."""
        total = self.wl.steps
        while self.step_count < total and not self.diverged and not self.ctrl.awaiting:
            self._train_step()

    def _done(self) -> bool:
        return self.diverged or self.step_count >= self.wl.steps

    def _obs(self) -> np.ndarray:
        return np.asarray(self.ctrl.observation, dtype=np.float32)

    # -- gymnasium --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._new_run()
        self._prev = self._metric()
        self._start = self._prev
        self._advance()
        return self._obs(), dict(self.info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.ctrl.forced_action = int(action)
        if not self._done():
            self._train_step()  # the decision step consumes the action
            self._advance()
        if self.diverged:
            return self._obs(), DIVERGED_REWARD, True, False, {**self.info, "diverged": True}
        now = self._metric()
        reward = self._reward(self._prev, now)
        self._prev = now
        done = self._done()
        info = dict(self.info)
        if done:
            info.update(final=now, start=self._start)
        return self._obs(), float(reward), done, False, info
