"""A learned learning-rate controller: a small policy network picks an lr multiplier.

After Xu, Dai, Kemp and Metz (2019, arXiv 1909.09712): every ``K`` steps a feature vector
of the training state (loss level and trend, gradient-norm statistics, validation loss and
gap when observed, the controller's own multiplier, progress through ``total_steps``)
goes through a small MLP whose output is a categorical distribution over a few lr factors
(e.g. ×0.5 … ×2). The chosen factor is proposed on every group's lr like any other
controller's, through the arbiter and its bounds; the action's probabilities are the
event's reason. The policy is trained with PPO by ``cadence.learn`` (extra ``[learn]``);
at run time only torch is needed: the shipped policy is a JSON file of plain numbers
(``learned_policy.json`` beside this module), so loading it can run no code.

The controller acts on top of whatever schedule the preset sets (``"learned"``: the
scale-aware start, a warmup and a cosine decay, see docs/learned.md), so "keep" means
"follow the schedule". Decisions are deterministic (greedy, the default) or sampled from
a seeded generator whose state is part of ``state_dict``; features come from the
rank-reduced signals, so every rank takes the same decision.

Timing: the features are computed at the last step of an interval and the decision is
taken at the next step, so the training environment (which must hand the features to the
agent before it answers) and the runtime see exactly the same numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cadence.checks import check_float, check_int
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals
from cadence.stats import Ema

__all__ = ["FEATURES", "LearnedLR", "PolicyNet", "default_policy_path", "load_policy"]

#: Names of the features, in the order the policy reads them (each clipped to ±CLIP).
FEATURES: tuple[str, ...] = (
    "progress",            # step / total_steps
    "log_mult",            # log of this controller's own lr multiplier
    "schedule",            # the schedule's multiplier for the first group (cosine value)
    "log_loss_rel",        # log(short loss EMA / its value at the first decision)
    "log_loss_short_long",  # log(short loss EMA / long loss EMA): the recent trend
    "log_loss_interval",   # log(short loss EMA / its value at the previous decision)
    "log_gnorm_rel",       # log(grad-norm EMA / its value at the first decision)
    "gnorm_cv",            # coefficient of variation of the grad norm (EMA moments)
    "val_seen",            # 1 when a validation loss has been observed, else 0
    "log_val_gap",         # log(val loss / short train loss EMA), 0 if unseen
    "log_val_best",        # log(val loss / best val loss so far), 0 if unseen
)
CLIP = 5.0
_TINY = 1e-12


def default_policy_path() -> Path:
    """The shipped policy: ``learned_policy.json`` beside this module."""
    return Path(__file__).with_name("learned_policy.json")


class PolicyNet(torch.nn.Module):
    """The runtime policy: Linear/Tanh layers to one logit per action."""

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(torch.nn.Tanh())
        self.net = torch.nn.Sequential(*layers).to(torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def load_policy(path: str | Path | None = None) -> tuple[PolicyNet, dict[str, Any]]:
    """Read a policy file (JSON: ``layers`` as lists of numbers, ``actions``, ``features``,
    ``decisions`` and provenance) into a :class:`PolicyNet` and its metadata."""
    path = Path(path) if path is not None else default_policy_path()
    if not path.exists():
        raise FileNotFoundError(
            f"no learned policy at {path}; train one with `cadence learn` (extra [learn])")
    spec = json.loads(path.read_text(encoding="utf-8"))
    if tuple(spec.get("features", ())) != FEATURES:
        raise ValueError(f"{path}: its features {spec.get('features')} are not this "
                         f"version's {list(FEATURES)}")
    layers = spec["layers"]
    sizes = [len(FEATURES)] + [len(layer["bias"]) for layer in layers]
    if sizes[-1] != len(spec["actions"]):
        raise ValueError(f"{path}: {sizes[-1]} outputs for {len(spec['actions'])} actions")
    net = PolicyNet(sizes)
    linears = [m for m in net.net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, layer in zip(linears, layers, strict=True):
            w = torch.tensor(layer["weight"], dtype=torch.float64)
            b = torch.tensor(layer["bias"], dtype=torch.float64)
            if w.shape != lin.weight.shape or b.shape != lin.bias.shape:
                raise ValueError(f"{path}: layer shape {tuple(w.shape)} does not fit "
                                 f"{tuple(lin.weight.shape)}")
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    net.eval()
    meta = {k: v for k, v in spec.items() if k != "layers"}
    return net, meta


def _log_ratio(a: float, b: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b <= 0:
        return 0.0
    return math.log(max(a, _TINY) / max(b, _TINY))


def _clip(x: float) -> float:
    return 0.0 if not math.isfinite(x) else max(-CLIP, min(CLIP, x))


@CONTROLLERS.register("learned")
class LearnedLR(Controller):
    """Every ``K = (total_steps − warmup) / decisions`` steps, multiply every group's lr by
    the factor a trained policy picks from the features in :data:`FEATURES`.

    Args:
        policy: path of a policy JSON file (default: the shipped one).
        greedy: take the most probable action (default); otherwise sample from a
            generator seeded with ``seed`` (its state is resumed exactly).
        seed: seed of that generator.
        bounds: range of this controller's own cumulative multiplier; a factor that would
            leave it is cut to the edge.
        decisions: decisions per run (default: what the policy was trained with).
        name: event source.

    Without ``total_steps`` the controller stays silent (its features need the horizon).
    """

    name = "learned"
    requires = ("loss", "grad_norm")

    def __init__(
        self,
        policy: str | None = None,
        greedy: bool = True,
        seed: int = 0,
        bounds: tuple[float, float] = (0.1, 10.0),
        decisions: int | None = None,
        name: str = "learned",
    ) -> None:
        self.name = name
        self.policy_path = None if policy is None else str(policy)
        self.greedy = bool(greedy)
        self.seed = int(seed)
        lo = check_float("bounds[0]", bounds[0], 0.0, 1.0, low_open=True)
        hi = check_float("bounds[1]", bounds[1], 1.0, None)
        self.bounds = (lo, hi)
        self.decisions = None if decisions is None else check_int("decisions", decisions)
        self._net: PolicyNet | None = None
        self._meta: dict[str, Any] = {}
        #: set by the training environment: the action index to take at the next decision
        #: instead of asking the policy (``None`` at run time)
        self.forced_action: int | None = None
        self._reset_state()

    # -- state ------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self._gen = torch.Generator().manual_seed(self.seed)
        self._mult = 1.0
        self._loss_ref = math.nan       # short loss EMA at the first decision
        self._loss_prev = math.nan      # short loss EMA at the previous decision
        self._gn_ref = math.nan
        self._gn = Ema(0.9)
        self._gn_sq = Ema(0.9)
        self._val_best = math.inf
        self._obs: list[float] | None = None   # features waiting for the next decision
        self._obs_step = -1
        self._decided = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "gen": self._gen.get_state(), "mult": self._mult, "loss_ref": self._loss_ref,
            "loss_prev": self._loss_prev, "gn_ref": self._gn_ref,
            "gn": self._gn.state_dict(), "gn_sq": self._gn_sq.state_dict(),
            "val_best": self._val_best, "obs": None if self._obs is None else list(self._obs),
            "obs_step": self._obs_step, "decided": self._decided,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._gen.set_state(state["gen"])
        self._mult = float(state["mult"])
        self._loss_ref = float(state["loss_ref"])
        self._loss_prev = float(state["loss_prev"])
        self._gn_ref = float(state["gn_ref"])
        self._gn.load_state_dict(dict(state["gn"]))
        self._gn_sq.load_state_dict(dict(state["gn_sq"]))
        self._val_best = float(state["val_best"])
        self._obs = None if state["obs"] is None else [float(x) for x in state["obs"]]
        self._obs_step = int(state["obs_step"])
        self._decided = int(state["decided"])

    # -- the policy -------------------------------------------------------------------------
    def _policy(self) -> tuple[PolicyNet, dict[str, Any]]:
        if self._net is None:
            self._net, self._meta = load_policy(self.policy_path)
        return self._net, self._meta

    @property
    def actions(self) -> tuple[float, ...]:
        """The lr factors the policy chooses among."""
        if "actions" not in self._meta:
            self._policy()
        return tuple(float(a) for a in self._meta["actions"])

    def use_actions(self, actions: Sequence[float], decisions: int) -> None:
        """Training: take actions only through :attr:`forced_action`, from ``actions``,
        ``decisions`` times per run (no policy file is read)."""
        self._meta = {"actions": [float(a) for a in actions], "decisions": int(decisions)}
        self.decisions = check_int("decisions", decisions)

    def num_decisions(self) -> int:
        if self.decisions is not None:
            return self.decisions
        if "decisions" not in self._meta:
            self._policy()
        return int(self._meta.get("decisions", 20))

    def interval(self, context: Context) -> tuple[int, int]:
        """(first decision step, steps between decisions) for this run."""
        total = context.total_steps or 0
        start = max(1, context.warmup_steps)
        every = max(1, (total - start) // self.num_decisions())
        return start, every

    def decision_due(self, step: int, context: Context) -> bool:
        """Whether ``step`` takes a decision: ``start + k·every`` for k < decisions,
        before ``total_steps``."""
        start, every = self.interval(context)
        k, rest = divmod(step - start, every)
        return (step >= start and rest == 0 and k < self.num_decisions()
                and step < (context.total_steps or 0))

    @property
    def awaiting(self) -> bool:
        """True when features are stored and the next step takes a decision (the
        environment then hands :attr:`observation` to the agent)."""
        return self._obs is not None

    @property
    def observation(self) -> list[float]:
        return list(self._obs) if self._obs is not None else [0.0] * len(FEATURES)

    def probabilities(self, features: Sequence[float]) -> list[float]:
        net, _ = self._policy()
        with torch.no_grad():
            logits = net(torch.tensor([list(features)], dtype=torch.float64))[0]
            return torch.softmax(logits, dim=0).tolist()

    # -- features ---------------------------------------------------------------------------
    def features(self, signals: Signals, context: Context) -> list[float]:
        """The feature vector (see :data:`FEATURES`) from this step's signals."""
        total = context.total_steps or 1
        short = float(signals.get("loss_ema_short", signals.get("loss", math.nan)))
        long = float(signals.get("loss_ema_long", short))
        if not math.isfinite(self._loss_ref) and math.isfinite(short):
            self._loss_ref = short
        if not math.isfinite(self._gn_ref) and self._gn.count:
            self._gn_ref = self._gn.value
        gn, gn_sq = self._gn.value, self._gn_sq.value
        cv = math.sqrt(max(0.0, gn_sq - gn * gn)) / gn if gn > 0 else 0.0
        val = context.metrics.get("val_loss")
        seen = val is not None and math.isfinite(float(val))
        if seen:
            self._val_best = min(self._val_best, float(val))  # type: ignore[arg-type]
        first = context.groups[0].name if context.groups else ""
        schedule = float(context.schedule_multiplier.get(first, 1.0))
        prev = self._loss_prev if math.isfinite(self._loss_prev) else short
        feats = [
            context.step / total,
            math.log(self._mult),
            schedule,
            _log_ratio(short, self._loss_ref),
            _log_ratio(short, long),
            _log_ratio(short, prev),
            _log_ratio(gn, self._gn_ref),
            cv,
            1.0 if seen else 0.0,
            _log_ratio(float(val), short) if seen else 0.0,  # type: ignore[arg-type]
            _log_ratio(float(val), self._val_best) if seen else 0.0,  # type: ignore[arg-type]
        ]
        self._loss_prev = short
        return [_clip(x) for x in feats]

    # -- the decision -----------------------------------------------------------------------
    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        if not context.total_steps:
            return []
        gn = float(signals.get("grad_norm", math.nan))
        if math.isfinite(gn):
            self._gn.update(gn)
            self._gn_sq.update(gn * gn)
        step = context.step
        out: list[Proposal] = []
        if self.decision_due(step, context) and self._obs is not None:
            out = self._decide(self._obs, step)
            self._obs = None
        if self.decision_due(step + 1, context):
            self._obs = self.features(signals, context)
            self._obs_step = step
        return out

    def _decide(self, obs: list[float], step: int) -> list[Proposal]:
        self._decided += 1
        forced, self.forced_action = self.forced_action, None
        actions = self.actions
        if forced is not None:
            index, reason = int(forced), f"action {actions[int(forced)]:g} (training)"
        else:
            probs = self.probabilities(obs)
            if self.greedy:
                index = max(range(len(probs)), key=probs.__getitem__)
            else:
                index = int(torch.multinomial(torch.tensor(probs, dtype=torch.float64), 1,
                                              generator=self._gen))
            shown = ", ".join(f"×{a:g}: {p:.2f}" for a, p in zip(actions, probs, strict=True))
            reason = f"policy P({shown})"
        lo, hi = self.bounds
        new = min(hi, max(lo, self._mult * actions[index]))
        factor = new / self._mult
        self._mult = new
        if abs(factor - 1.0) < 1e-12:
            return []
        return [Proposal("lr", factor=factor, source=self.name,
                         reason=f"{reason} → lr ×{factor:.3g} (learned multiplier now "
                                f"{new:.3g}, decision {self._decided} at step {step})")]
