"""The Regime: one object that measures, guards, decides and steps the optimizer.

``regime.step(loss)`` runs, in this order (see docs/regime.md):

1. **measure** — global gradient norm (computed once, shared with clipping) and the loss,
   in one host sync; then every signal's ``measure``; all values are packed and, under
   ``torch.distributed``, all-reduced in one collective so every rank sees the same numbers;
2. **guard** — non-finite values skip the step; spikes or repeated bad steps roll back to
   the last known-good snapshot and cut the lr;
3. **propose** — each controller returns proposals from (signals, context);
4. **arbitrate** — proposals compose per (group, knob), are clamped per step and bounded;
5. **apply** — the new values are written into ``optimizer.param_groups`` (lr = base ×
   schedule(step) × controller multiplier);
6. ``optimizer.step()`` (or ``scaler.step``), ``optimizer.zero_grad()``;
7. **record** — one Event per change; metrics every ``metrics_every`` steps.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cadence.controllers.guard import Guard, GuardError
from cadence.events import Event, JsonLines, JsonlSink, MemorySink, Sink, json_safe
from cadence.protocol import (
    CONTROLLERS,
    GROUP_NAME_KEY,
    KNOBS,
    SIGNALS,
    Context,
    GroupView,
    MeasureContext,
    Proposal,
)
from cadence.regime import distributed as dist_utils
from cadence.regime.apply import CLIP_KEY, LR_MULT_KEY, base_key, ensure_base, has_knob, write_knob
from cadence.regime.arbiter import Arbiter, Change
from cadence.regime.bounds import bounds_for, validate_bounds
from cadence.regime.presets import resolve_preset
from cadence.regime.schedule import GroupSchedules, schedule_to_dict
from cadence.regime.snapshot import Snapshot
from cadence.signals.core import CORE_SIGNALS, global_grad_norm

_STATE_VERSION = 1


class _PresetDefault:
    """Sentinel: "use the preset's default" (shown as such in signatures)."""

    def __repr__(self) -> str:
        return "<preset default>"


_UNSET: Any = _PresetDefault()


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_opt_int(name: str, value: Any, minimum: int) -> int | None:
    return None if value is None else _check_int(name, value, minimum)


def _config_of(obj: Any) -> dict[str, Any]:
    get = getattr(obj, "get_config", None)
    return dict(get()) if callable(get) else {}


class Regime:
    """Adaptive training regime around a torch optimizer.

    Call ``regime.step(loss)`` after ``loss.backward()`` instead of ``optimizer.step()`` and
    ``optimizer.zero_grad()``. Hyper-parameters stay in ``optimizer.param_groups``: each
    group's base values are stored once under ``cadence_base_<knob>`` keys, and its
    learning rate becomes ``cadence_base_lr × schedule(step) × multiplier`` (the multiplier,
    moved by controllers, is also written to ``group["cadence_lr_mult"]``). Other knobs
    (momentum, beta2, weight_decay, clip_norm) are changed by value.

    Args:
        optimizer: any ``torch.optim.Optimizer`` (SGD, Adam, AdamW, RMSprop, Adagrad,
            third-party). Knobs it lacks are skipped with one warning each.
        total_steps: planned number of real optimizer updates (needed by ``"cosine"``).
        preset: ``"auto"`` (default: the zero-tuning preset of ``cadence.controllers.auto``;
            without it, ``"cosine"`` given ``total_steps``, else ``"plateau"``),
            ``"constant"``, ``"cosine"`` (linear warmup, 5 % of total_steps by default, then
            cosine to 0), ``"plateau"``, or any registered preset (``register_preset``).
        controllers: extra controllers (objects or registered names) added to the preset's.
        schedule: replaces the preset's lr schedule: one callable ``step -> multiplier`` or
            ``{group name or fnmatch pattern: schedule}``.
        log_dir: folder for ``config.json``, ``events.jsonl``, ``metrics.jsonl`` and
            ``snapshot.pt`` (rank 0 only); ``None`` keeps everything in memory.
        warmup_steps: warmup length for the preset's schedule (and ``Context.warmup_steps``).
        bounds: ``{knob: (lo, hi)}`` absolute bounds; for ``lr`` they bound base × multiplier.
        max_change: largest factor a knob may move by per step (``None``: unlimited).
            Guard proposals are exempt.
        max_lr_spread: largest ratio between the lr multipliers of two groups (``None``).
        smoothing: in [0, 1); fraction of a requested change deferred to later steps.
        clip_norm: global gradient-norm clipping threshold (a float, a controllable knob),
            ``"adaptive"`` (a high percentile of recent norms), or ``None``; defaults to the
            preset's choice (none for the built-in presets).
        scaler: a ``torch.amp.GradScaler``; the Regime unscales before measuring, steps
            through it, and does not count steps it skips.
        accumulation_steps: call ``step(loss)`` after every micro-batch; the optimizer steps
            on every k-th call.
        metrics_every: write a ``metrics.jsonl`` line every this many real steps.
        snapshot_every: take a known-good snapshot (for rollback) every this many steps;
            0 disables snapshots (saves a copy of parameters and optimizer state; a rollback
            then only cuts the lr).
        guard: ``True`` (default guard), ``False``/``None`` (no guard at all: non-finite
            steps are not skipped), a ``dict`` of :class:`Guard` arguments, or a ``Guard``.
        signals: extra Signal objects or registered names.
        seed: seeds ``regime.generator`` (a ``torch.Generator`` saved in the state dict) for
            controllers that draw random numbers.

    Attributes:
        events: every Event so far (on every rank).
        signals: the latest signal values.
        step_count: real optimizer updates done.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int | None = None,
        preset: str = "auto",
        controllers: Sequence[Any] | None = None,
        schedule: Any = None,
        log_dir: str | Path | None = None,
        *,
        warmup_steps: int | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        max_change: float | None = 1.1,
        max_lr_spread: float | None = None,
        smoothing: float = 0.0,
        clip_norm: float | str | None = _UNSET,
        scaler: Any = None,
        accumulation_steps: int = 1,
        metrics_every: int = 10,
        snapshot_every: int = 100,
        guard: bool | dict[str, Any] | Guard | None = _UNSET,
        signals: Sequence[Any] | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.params: list[torch.Tensor] = [p for g in optimizer.param_groups for p in g["params"]]
        if not self.params:
            raise ValueError("optimizer has no parameters; build it from model.parameters()")
        self._total_steps = _check_opt_int("total_steps", total_steps, 1)
        self._warmup_arg = _check_opt_int("warmup_steps", warmup_steps, 0)
        self.accumulation_steps = _check_int("accumulation_steps", accumulation_steps, 1)
        self.metrics_every = _check_int("metrics_every", metrics_every, 1)
        self.snapshot_every = _check_int("snapshot_every", snapshot_every, 0)
        self.scaler = scaler
        self.seed = seed
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(int(seed))

        # groups and their names
        names = []
        for i, g in enumerate(optimizer.param_groups):
            name = g.get(GROUP_NAME_KEY) or f"group{i}"
            if not isinstance(name, str):
                raise TypeError(f"param group {i} has a non-string name {name!r}")
            if name in names:
                raise ValueError(
                    f"two param groups are named {name!r}; give each group a unique 'name'"
                )
            names.append(name)
        self.group_names: list[str] = names
        self._num_params = {
            n: sum(p.numel() for p in g["params"] if p.requires_grad)
            for n, g in zip(names, optimizer.param_groups, strict=True)
        }
        self._sched_step: int | None = None
        self._sched_vals: dict[str, float] = {}

        # preset: schedule, controllers, signals, options
        self.preset = preset
        plan = resolve_preset(preset, self._total_steps, self._warmup_arg)
        opts = dict(plan.options)
        # a preset may widen or narrow the default bounds; knobs the user bounds win
        self.user_bounds = {**validate_bounds(opts.get("bounds")), **validate_bounds(bounds)}
        self.warmup_steps = int(opts.get("warmup_steps", self._warmup_arg or 0))
        if clip_norm is _UNSET:
            clip_norm = opts.get("clip_norm")
        if guard is _UNSET:
            guard = opts.get("guard", True)
        self.clip_mode = self._check_clip(clip_norm)
        self._user_schedule = schedule
        self._plan_total = self._total_steps
        self._replans: list[list[int]] = []
        self.schedules = GroupSchedules(schedule if schedule is not None else plan.schedule, names)

        # knobs and base values
        if isinstance(self.clip_mode, float):
            for g in optimizer.param_groups:
                g.setdefault(CLIP_KEY, self.clip_mode)
        self.knobs: dict[str, list[str]] = {}
        self.base: dict[str, dict[str, float]] = {}
        for name, g in zip(names, optimizer.param_groups, strict=True):
            self.knobs[name] = [k for k in KNOBS if has_knob(g, k)]
            self.base[name] = {k: ensure_base(g, k) for k in self.knobs[name]}
        self.lr_mult: dict[str, float] = {n: 1.0 for n in names}
        self._values: dict[str, dict[str, float]] = {
            n: {k: self.base[n][k] for k in self.knobs[n] if k != "lr"} for n in names
        }
        self._warned: set[str] = set()

        # parts
        self.guard: Guard | None = self._make_guard(guard)
        self._user_controllers = [
            self._make(c, CONTROLLERS, "controller") for c in controllers or []
        ]
        self.controllers: list[Any] = [
            self._make(c, CONTROLLERS, "controller") for c in plan.controllers
        ] + self._user_controllers
        self._controller_keys = self._unique_keys(self.controllers)
        core = [SIGNALS.create(n) for n in CORE_SIGNALS]
        self._user_signals = [self._make(s, SIGNALS, "signal") for s in signals or []]
        extra = [self._make(s, SIGNALS, "signal") for s in plan.signals] + self._user_signals
        self.signal_objs: list[Any] = core + [
            s for s in extra if s.name not in {c.name for c in core}
        ]
        self.signal_objs += self._required_signals(self.controllers, self.signal_objs)
        self._signal_keys = self._unique_keys(self.signal_objs)
        self.arbiter = Arbiter(max_change, max_lr_spread, smoothing)
        self.max_change, self.max_lr_spread, self.smoothing = max_change, max_lr_spread, smoothing
        self.snapshot = Snapshot(optimizer)

        # run state
        self.step_count = 0
        self.signals: dict[str, float] = {}
        self.metrics: dict[str, float] = {}
        self.metrics_step: int | None = None
        self._event_offset = 0
        self._micro = 0
        self._micro_losses: list[torch.Tensor] = []
        self._micro_norms: list[torch.Tensor] = []
        self._prev_grads: list[torch.Tensor] | None = None
        self._prev_params: list[torch.Tensor] | None = None

        # sinks (files on rank 0 only)
        self._memory = MemorySink()
        self.sinks: list[Sink] = [self._memory]
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._metrics_file: JsonLines | None = None
        self._is_writer = dist_utils.rank() == 0
        if self.log_dir is not None and self._is_writer:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.sinks.append(JsonlSink(self.log_dir / "events.jsonl"))
            self._metrics_file = JsonLines(self.log_dir / "metrics.jsonl")
            with open(self.log_dir / "config.json", "w", encoding="utf-8") as fh:
                json.dump(json_safe(self.config()), fh, indent=2)

        self._write_lr()

    # -- construction helpers -----------------------------------------------------------------
    @staticmethod
    def _check_clip(clip_norm: Any) -> float | str | None:
        if clip_norm is None or clip_norm == "adaptive":
            return clip_norm
        if isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float)):
            raise TypeError(f"clip_norm must be a number, 'adaptive' or None, got {clip_norm!r}")
        if not (clip_norm > 0 and math.isfinite(clip_norm)):
            raise ValueError(f"clip_norm must be a finite number > 0, got {clip_norm}")
        return float(clip_norm)

    def _make_guard(self, guard: Any) -> Guard | None:
        if guard is None or guard is False:
            g = None
        elif guard is True:
            g = Guard()
        elif isinstance(guard, Mapping):
            g = Guard(**guard)
        elif isinstance(guard, Guard):
            g = guard
        else:
            raise TypeError(f"guard must be True, False, a dict or a Guard, got {guard!r}")
        if self.clip_mode == "adaptive":
            if g is None:
                raise ValueError("clip_norm='adaptive' needs the guard (guard=False was given)")
            if g.clip_percentile is None:
                g.clip_percentile = 95.0
        return g

    @staticmethod
    def _required_signals(controllers: Iterable[Any], present: Iterable[Any]) -> list[Any]:
        """Create the registered signals that controllers list in ``requires`` but nobody
        supplied, with the keyword arguments each controller gives in ``signal_options``."""
        have = {s.name for s in present}
        made: list[Any] = []
        for ctrl in controllers:
            options = getattr(ctrl, "signal_options", {})
            for name in getattr(ctrl, "requires", ()):
                if name not in have and name in SIGNALS:
                    made.append(SIGNALS.create(name, **options.get(name, {})))
                    have.add(name)
        return made

    @staticmethod
    def _make(obj: Any, registry: Any, kind: str) -> Any:
        if isinstance(obj, str):
            obj = registry.create(obj)
        needed = ("propose",) if kind == "controller" else ("measure", "update")
        missing = [m for m in (*needed, "state_dict", "load_state_dict") if not hasattr(obj, m)]
        if missing or not isinstance(getattr(obj, "name", None), str):
            raise TypeError(
                f"{kind} {obj!r} does not follow the {kind} protocol (needs a str 'name' and "
                f"{', '.join(needed + ('state_dict', 'load_state_dict'))}); missing: "
                f"{missing or ['name']}"
            )
        return obj

    @staticmethod
    def _unique_keys(objs: Iterable[Any]) -> list[str]:
        keys: list[str] = []
        for o in objs:
            k, i = o.name, 2
            while k in keys:
                k, i = f"{o.name}#{i}", i + 1
            keys.append(k)
        return keys

    # -- public read-only views ---------------------------------------------------------------
    @property
    def events(self) -> list[Event]:
        """Every event of this run so far (since construction or the last load)."""
        return self._memory.events

    @property
    def total_steps(self) -> int | None:
        """Planned real updates; change it with :meth:`replan`."""
        return self._total_steps

    @total_steps.setter
    def total_steps(self, value: int) -> None:
        self.replan(value)

    def values(self, group: str | None = None) -> dict[str, Any]:
        """Current effective knob values: ``{group: {knob: value}}``, or one group's dict."""
        out = {n: self._effective(n) for n in self.group_names}
        if group is None:
            return out
        if group not in out:
            raise ValueError(f"unknown group {group!r}; groups are {self.group_names}")
        return out[group]

    def _effective(self, name: str) -> dict[str, float]:
        vals = dict(self._values[name])
        if "lr" in self.knobs[name]:
            vals["lr"] = self._lr(name, self.step_count)
        return {k: vals[k] for k in self.knobs[name]}

    def _lr(self, name: str, step: int) -> float:
        return self.base[name]["lr"] * self._sched(name, step) * self.lr_mult[name]

    def _sched(self, name: str, step: int) -> float:
        """Schedule multiplier of group ``name`` at ``step`` (memoised for the current step)."""
        if self._sched_step != step:
            self._sched_step = step
            self._sched_vals = {n: self.schedules(n, step) for n in self.group_names}
        return self._sched_vals[name]

    def config(self) -> dict[str, Any]:
        """The configuration (the content of ``config.json``).

        Top-level keys are Regime arguments (``None``/empty ones left out), so the file can
        be passed to :meth:`from_config`; ``controllers``/``signals`` list only those given
        beyond the preset's. ``optimizer`` and ``groups`` (with each group's resolved
        schedule) are informational.
        """
        import cadence

        opt = self.optimizer
        defaults = {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in opt.defaults.items()
            if isinstance(v, (int, float, str, bool, tuple, type(None)))
        }
        cfg = {
            "preset": self.preset,
            "total_steps": self._total_steps,
            "warmup_steps": self._warmup_arg,
            "controllers": [
                {"name": c.name, "params": _config_of(c)} for c in self._user_controllers
            ],
            "signals": [{"name": s.name, "params": _config_of(s)} for s in self._user_signals],
            "schedule": self.schedules.to_dict() if self._user_schedule is not None else None,
            "bounds": {k: list(v) for k, v in self.user_bounds.items()},
            "max_change": self.max_change,
            "max_lr_spread": self.max_lr_spread,
            "smoothing": self.smoothing,
            "clip_norm": self.clip_mode,
            "accumulation_steps": self.accumulation_steps,
            "metrics_every": self.metrics_every,
            "snapshot_every": self.snapshot_every,
            "guard": self.guard.get_config() if self.guard is not None else False,
            "seed": self.seed,
            "optimizer": {"class": type(opt).__name__, "defaults": defaults},
            "groups": [
                {
                    "name": n,
                    "num_params": sum(p.numel() for p in g["params"]),
                    "depth": g.get("depth"),
                    "base": dict(self.base[n]),
                    "schedule": schedule_to_dict(self.schedules.by_group[n]),
                    "warmup_steps": self.warmup_steps,
                }
                for n, g in zip(self.group_names, opt.param_groups, strict=True)
            ],
            "cadence_version": cadence.__version__,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        return {k: v for k, v in cfg.items() if v is not None and v != []}

    @classmethod
    def from_config(
        cls, optimizer: torch.optim.Optimizer, path: str | Path, **overrides: Any
    ) -> Regime:
        """Build a Regime from a ``config.json`` (see ``cadence.regime.config``)."""
        from cadence.regime.config import regime_from_config

        return regime_from_config(optimizer, path, **overrides)

    # -- the step -----------------------------------------------------------------------------
    def step(self, loss: torch.Tensor, closure: Any = None) -> bool:
        """Measure, guard, adapt and step the optimizer; ``True`` iff the optimizer stepped.

        Call after ``loss.backward()`` (with accumulation: after every micro-batch). Zeroes
        the gradients whenever a real update (or a skip) happens.
        """
        self._check_loss(loss)
        self._micro_losses.append(loss.detach())
        if self.accumulation_steps > 1:
            self._track_micro_norm()
        self._micro += 1
        if self._micro < self.accumulation_steps:
            return False
        self._micro = 0
        try:
            return self._real_step(closure)
        finally:
            self._micro_losses = []
            self._micro_norms = []

    def _check_loss(self, loss: Any) -> None:
        if not isinstance(loss, torch.Tensor):
            raise TypeError(
                f"regime.step(loss) needs the loss tensor you called backward() on, got "
                f"{type(loss).__name__}"
            )
        if loss.numel() != 1:
            raise ValueError(
                f"regime.step(loss) needs a scalar loss, got shape {tuple(loss.shape)}; "
                "reduce it (e.g. loss.mean()) before backward()"
            )
        if not loss.requires_grad:
            raise ValueError(
                "regime.step(loss) got a loss that does not require grad (detached, or "
                "computed under torch.no_grad()); pass the loss you called backward() on"
            )

    def _grads(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params = [p for p in self.params if p.grad is not None]
        return params, [p.grad for p in params]  # type: ignore[misc]

    def _track_micro_norm(self) -> None:
        """Norm of this micro-batch's gradient increment (for the noise signals).

        Keeps one buffer per gradient (allocated once) holding the accumulated gradient of
        the previous micro-batch; the increment is the difference.
        """
        params, grads = self._grads()
        if not grads:
            return
        prev = self._prev_params
        same = (
            prev is not None
            and len(params) == len(prev)
            and all(a is b for a, b in zip(params, prev, strict=True))
        )
        if self._micro == 0 or not same or self._prev_grads is None:
            self._micro_norms.append(global_grad_norm(grads))
        else:
            self._micro_norms.append(global_grad_norm(torch._foreach_sub(grads, self._prev_grads)))
        if self._micro == self.accumulation_steps - 1:
            return  # the real step follows; no increment to take after it
        if same and self._prev_grads is not None:
            torch._foreach_copy_(self._prev_grads, grads)
        else:
            self._prev_grads = [g.detach().clone() for g in grads]
            self._prev_params = params

    def _real_step(self, closure: Any) -> bool:
        opt = self.optimizer
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        params, grads = self._grads()
        if not grads:
            raise RuntimeError(
                "regime.step(loss) found no gradients: call loss.backward() before "
                "regime.step(loss), and check that the optimizer holds the model's parameters"
            )
        step = self.step_count

        # 1. measure: one host sync for loss, grad norm and micro-batch norms
        losses = self._micro_losses
        loss_t = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        norm_t = global_grad_norm(grads)
        dev = norm_t.device
        first = [loss_t.to(dev, torch.float32), norm_t, *[n.to(dev) for n in self._micro_norms]]
        host = torch.stack(first).tolist()
        groups_params: dict[str, list[torch.Tensor]] = {
            n: [p for p in g["params"] if p.requires_grad]
            for n, g in zip(self.group_names, opt.param_groups, strict=True)
        }
        mctx = MeasureContext(
            step=step,
            loss=host[0],
            params_by_group=groups_params,
            optimizer=opt,
            grad_norm=host[1],
            micro_grad_norms=host[2:],
            closure=closure,
        )
        due = [s for s in self.signal_objs if step % max(1, int(getattr(s, "every", 1))) == 0]
        raw: dict[str, Any] = {}
        for s in due:
            for k, v in s.measure(mctx).items():
                if k in raw:
                    raise ValueError(f"signal {s.name!r} measures key {k!r} already measured")
                raw[k] = v
        reduced = dist_utils.reduce_mean(raw)

        # 2. guard
        nonfinite = reduced.get("nonfinite", 0.0) > 0
        loss_ok = math.isfinite(reduced.get("loss", math.nan))
        if nonfinite and self.scaler is not None and loss_ok:
            return self._skip(step, reduced, "scaler", "GradScaler found inf/NaN gradients")
        verdict, reason = "ok", ""
        # the adaptive threshold comes from earlier steps only: an outlier must not vote
        adaptive_clip = self.guard.clip_threshold() if self.guard is not None else None
        if self.guard is not None:
            try:
                verdict, reason = self.guard.check(reduced, step)
            except GuardError as err:
                where = self.snapshot.path or "in memory only (set log_dir to keep it on disk)"
                raise GuardError(
                    f"{err}. Last known-good snapshot: step {self.snapshot.step}, {where}"
                ) from None
        if verdict == "skip":
            return self._skip(step, reduced, "guard", reason)
        if verdict == "rollback":
            return self._rollback(step, reduced, reason)
        if verdict == "shift":  # a real change of the data: record it and train on
            self._emit(Event(step, None, None, None, None, "guard", reason, dict(reduced),
                             kind="drift"))

        signals = dict(reduced)
        for s in due:
            signals.update(s.update(reduced))
        self.signals = {**self.signals, **signals}
        if self.guard is not None and self.snapshot_every and step % self.snapshot_every == 0:
            self._take_snapshot(step)

        # 3-5. propose, arbitrate, apply
        context = self._context(step)
        proposals: list[Proposal] = []
        for c in self.controllers:
            proposals.extend(c.propose(self.signals, context))
        if self.guard is not None:
            proposals.extend(self.guard.propose(self.signals, context))
        self._decide(step, proposals)
        self._write_lr(step)
        self._clip(grads, norm_t, host[1], adaptive_clip)

        # 6. step
        if self.scaler is not None:
            self.scaler.step(opt, closure) if closure is not None else self.scaler.step(opt)
            self.scaler.update()
        elif closure is not None:
            opt.step(closure)
        else:
            opt.step()
        for s in due:
            after = getattr(s, "after_step", None)
            if callable(after):
                after(mctx)
        opt.zero_grad(set_to_none=True)
        self.step_count += 1
        self._write_lr()  # the groups show the lr of the next update, as after a torch scheduler

        # 7. record
        if self.step_count % self.metrics_every == 0:
            self._write_metrics(host[0])
        return True

    def _clip(
        self,
        grads: list[torch.Tensor],
        norm_t: torch.Tensor,
        norm: float,
        adaptive: float | None,
    ) -> None:
        """Global-norm clipping (torch's ``clip_grad_norm_`` rule) at the tightest threshold."""
        thr = [
            self._values[n]["clip_norm"] for n in self.group_names if "clip_norm" in self._values[n]
        ]
        if adaptive is not None:
            thr.append(adaptive)
        if not thr:
            return
        threshold = min(thr)
        self.signals["clip_threshold"] = threshold
        if norm > threshold:
            coef = (threshold / (norm_t + 1e-6)).clamp(max=1.0)
            torch._foreach_mul_(grads, coef.to(grads[0].device))

    def _context(self, step: int) -> Context:
        views = []
        for n, g in zip(self.group_names, self.optimizer.param_groups, strict=True):
            vals = dict(self._values[n])
            if "lr" in self.knobs[n]:
                vals["lr"] = self._lr(n, step)
            views.append(
                GroupView(
                    name=n,
                    values=vals,
                    base=dict(self.base[n]),
                    num_params=self._num_params[n],
                    depth=g.get("depth"),
                )
            )
        return Context(
            step=step,
            total_steps=self._total_steps,
            groups=views,
            warmup_steps=self.warmup_steps,
            schedule_multiplier={n: self._sched(n, step) for n in self.group_names},
            metrics=dict(self.metrics),
            metrics_step=self.metrics_step,
            num_params=sum(v.num_params for v in views),
            is_distributed=dist_utils.is_distributed(),
            world_size=dist_utils.world_size(),
        )

    # -- decisions ----------------------------------------------------------------------------
    def _decide(self, step: int, proposals: list[Proposal]) -> None:
        """Arbitrate ``proposals`` and apply the changes, one Event each."""
        for p in proposals:
            if p.group is not None and p.group not in self.knobs:
                raise ValueError(
                    f"{p.source or 'a controller'} proposed a change to unknown group "
                    f"{p.group!r}; groups are {self.group_names}"
                )
            targets = [p.group] if p.group is not None else self.group_names
            if p.knob not in self._warned and not any(
                p.knob in self.knobs.get(t, ()) for t in targets
            ):
                self._warned.add(p.knob)
                warnings.warn(
                    f"{type(self.optimizer).__name__} has no {p.knob!r} in its param groups; "
                    f"proposals for it (from {p.source or 'a controller'}) are ignored",
                    stacklevel=4,
                )
        current: dict[str, dict[str, float]] = {}
        bounds: dict[str, dict[str, tuple[float, float]]] = {}
        scale: dict[str, float] = {}
        for n in self.group_names:
            current[n] = dict(self._values[n])
            bounds[n] = {}
            for k in self.knobs[n]:
                lo, hi = bounds_for(k, self.base[n][k], self.user_bounds)
                if k == "lr":
                    b = self.base[n]["lr"]
                    lo, hi = (lo / b, hi / b) if b > 0 else (0.0, math.inf)
                    current[n]["lr"] = self.lr_mult[n]
                    scale[n] = b * self._sched(n, step)
                bounds[n][k] = (lo, hi)
        for ch in self.arbiter.decide(proposals, current, bounds, scale):
            self._apply(step, ch)

    def _apply(self, step: int, ch: Change) -> None:
        idx = self.group_names.index(ch.group)
        group = self.optimizer.param_groups[idx]
        if ch.knob == "lr":
            old = self._lr(ch.group, step)
            self.lr_mult[ch.group] = ch.new
            group[LR_MULT_KEY] = ch.new
            new = self._lr(ch.group, step)
        else:
            old, new = ch.old, ch.new
            self._values[ch.group][ch.knob] = ch.new
            write_knob(group, ch.knob, ch.new)
        # a change that answers a detected drift (its reason, or one joined part, says so)
        drift = any(part.startswith("drift:") for part in ch.reason.split("; "))
        kind = "drift" if drift else "change"
        self._emit(Event(
            step, ch.group, ch.knob, old, new, ch.source, ch.reason, dict(self.signals), kind
        ))

    def _write_lr(self, step: int | None = None) -> None:
        """Write every group's effective lr (and multiplier) for update number ``step``."""
        step = self.step_count if step is None else step
        for n, g in zip(self.group_names, self.optimizer.param_groups, strict=True):
            if "lr" in self.knobs[n]:
                write_knob(g, "lr", self._lr(n, step))
                g[LR_MULT_KEY] = self.lr_mult[n]

    def _emit(self, event: Event) -> None:
        for s in self.sinks:
            s.write(event)

    # -- skip / rollback ----------------------------------------------------------------------
    def _skip(self, step: int, reduced: dict[str, float], source: str, reason: str) -> bool:
        if self.scaler is not None:
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.signals = {**self.signals, **reduced}
        self._emit(Event(step, None, None, None, None, source, reason, dict(reduced), kind="skip"))
        return False

    def _rollback(self, step: int, reduced: dict[str, float], reason: str) -> bool:
        assert self.guard is not None
        if self.scaler is not None:
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.signals = {**self.signals, **reduced}
        if self.snapshot.valid:
            self.snapshot.restore()
            self.guard.rewind(self.snapshot.step)  # type: ignore[arg-type]
            reason = f"{reason}; restored the snapshot of step {self.snapshot.step}"
        else:
            reason = f"{reason}; no snapshot yet, parameters kept"
        self._emit(
            Event(step, None, None, None, None, "guard", reason, dict(reduced), kind="rollback")
        )
        self._decide(step, [self.guard.after_rollback(step)])
        self._write_lr(step)
        return False

    def _take_snapshot(self, step: int) -> None:
        self.snapshot.take(step)
        if self.log_dir is not None and self._is_writer:
            self.snapshot.save(self.log_dir / "snapshot.pt", {"regime": self.state_dict()})

    # -- metrics ------------------------------------------------------------------------------
    def observe(self, **metrics: float) -> None:
        """Record observed metrics (``val_loss=...``) for the controllers that use them.

        Under ``torch.distributed`` every rank must call it (values are averaged over ranks).
        """
        if not metrics:
            raise ValueError("observe() needs at least one metric, e.g. observe(val_loss=0.3)")
        vals: dict[str, Any] = {}
        for k, v in metrics.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    raise ValueError(f"observe({k}=...) needs a scalar, got shape {tuple(v.shape)}")
                vals[k] = v.detach()
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                vals[k] = float(v)
            else:
                raise TypeError(f"observe({k}=...) needs a number, got {type(v).__name__}")
        reduced = dist_utils.reduce_mean(vals)
        self.metrics.update(reduced)
        self.metrics_step = self.step_count
        if self._metrics_file is not None:
            self._metrics_file.write_dict(self._metrics_record(self.signals.get("loss"), reduced))

    def _metrics_record(
        self, loss: float | None, metrics: dict[str, float] | None
    ) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "step": self.step_count,
            "time": time.time(),
            "loss": loss,
            "values": self.values(),
            "signals": dict(self.signals),
        }
        if metrics is not None:
            rec["metrics"] = dict(metrics)
        return rec

    def _write_metrics(self, loss: float) -> None:
        if self._metrics_file is not None:
            self._metrics_file.write_dict(self._metrics_record(loss, None))

    # -- re-planning --------------------------------------------------------------------------
    def replan(self, total_steps: int) -> None:
        """Change the horizon: stretch the rest of every schedule to ``total_steps``.

        Logs a ``"replan"`` event. The part of the schedule already run is unchanged.
        """
        new = _check_int("total_steps", total_steps, 1)
        old = self._total_steps
        if new == old:
            return
        if new <= self.step_count:
            raise ValueError(
                f"total_steps={new} is not beyond the {self.step_count} steps already done"
            )
        if old is not None:
            self.schedules.replan(self.step_count, old, new)
            self._sched_step = None
            self._replans.append([self.step_count, old, new])
            reason = (
                f"total_steps {old} -> {new}: remaining schedule stretched from step "
                f"{self.step_count}"
            )
        else:
            reason = f"total_steps set to {new} (schedule unchanged: it had no horizon)"
        self._total_steps = new
        self._emit(
            Event(
                self.step_count,
                None,
                None,
                old,
                new,
                "regime",
                reason,
                dict(self.signals),
                kind="replan",
            )
        )
        self._write_lr()

    # -- state --------------------------------------------------------------------------------
    def _fingerprint(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "controllers": list(self._controller_keys),
            "signals": list(self._signal_keys),
            "groups": list(self.group_names),
            "knobs": {n: list(k) for n, k in self.knobs.items()},
            "guard": self.guard is not None,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly (plain Python + one RNG tensor)."""
        return {
            "version": _STATE_VERSION,
            "fingerprint": self._fingerprint(),
            "step_count": self.step_count,
            "total_steps": self._total_steps,
            "plan_total": self._plan_total,
            "replans": [list(r) for r in self._replans],
            "warmup_steps": self.warmup_steps,
            "base": {n: dict(b) for n, b in self.base.items()},
            "lr_mult": dict(self.lr_mult),
            "values": {n: dict(v) for n, v in self._values.items()},
            "arbiter": self.arbiter.state_dict(),
            "controllers": {
                k: c.state_dict()
                for k, c in zip(self._controller_keys, self.controllers, strict=True)
            },
            "signals": {
                k: s.state_dict() for k, s in zip(self._signal_keys, self.signal_objs, strict=True)
            },
            "guard": self.guard.state_dict() if self.guard is not None else None,
            "last_signals": dict(self.signals),
            "metrics": dict(self.metrics),
            "metrics_step": self.metrics_step,
            "event_count": self._event_offset + len(self.events),
            "snapshot": {"step": self.snapshot.step, "path": self.snapshot.path},
            "warned": sorted(self._warned),
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; raises ``ValueError`` if it is from another setup.

        If this Regime was built with a different ``total_steps`` than the saved run, the
        rest of the schedule is re-planned explicitly (a ``"replan"`` event), never silently.
        """
        if not isinstance(state, Mapping) or "fingerprint" not in state:
            raise ValueError("not a Regime state dict (no 'fingerprint'); pass regime.state_dict()")
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"Regime state version {state.get('version')} is not supported")
        mine, theirs = self._fingerprint(), state["fingerprint"]
        diffs = [
            f"{k}: saved {theirs.get(k)!r}, here {v!r}"
            for k, v in mine.items()
            if theirs.get(k) != v
        ]
        if diffs:
            raise ValueError(
                "Regime state dict comes from a different configuration; build the Regime "
                "with the same preset, controllers, signals, guard and param groups. "
                "Differences: " + "; ".join(diffs)
            )
        wanted_total = self._total_steps
        self.step_count = int(state["step_count"])
        self.warmup_steps = int(state["warmup_steps"])
        # rebuild the schedule as the saved run had it, then replay its re-plans
        self._plan_total = state["plan_total"]
        spec = self._user_schedule
        if spec is None:
            spec = resolve_preset(self.preset, self._plan_total, self.warmup_steps).schedule
        self.schedules = GroupSchedules(spec, self.group_names)
        self._replans = [list(r) for r in state["replans"]]
        for at, old, new in self._replans:
            self.schedules.replan(at, old, new)
        self._sched_step = None
        self._total_steps = state["total_steps"]
        self.base = {n: dict(b) for n, b in state["base"].items()}
        self.lr_mult = {n: float(m) for n, m in state["lr_mult"].items()}
        self._values = {n: {k: float(x) for k, x in v.items()} for n, v in state["values"].items()}
        for n, g in zip(self.group_names, self.optimizer.param_groups, strict=True):
            for k, b in self.base[n].items():
                g[base_key(k)] = b
            for k, v in self._values[n].items():
                write_knob(g, k, v)
        self.arbiter.load_state_dict(state["arbiter"])
        for k, c in zip(self._controller_keys, self.controllers, strict=True):
            c.load_state_dict(state["controllers"][k])
        for k, s in zip(self._signal_keys, self.signal_objs, strict=True):
            s.load_state_dict(state["signals"][k])
        if self.guard is not None:
            self.guard.load_state_dict(state["guard"])
        self.signals = dict(state["last_signals"])
        self.metrics = dict(state["metrics"])
        self.metrics_step = state["metrics_step"]
        self._event_offset = int(state["event_count"]) - len(self.events)
        self.snapshot.path = state["snapshot"]["path"]
        self._warned = set(state["warned"])
        self.generator.set_state(state["rng"])
        self._micro, self._micro_losses, self._micro_norms = 0, [], []
        self._write_lr()
        if wanted_total is not None and wanted_total != self._total_steps:
            self.replan(wanted_total)

    def close(self) -> None:
        """Close the log files (they are flushed after every line anyway)."""
        for s in self.sinks:
            s.close()
        if self._metrics_file is not None:
            self._metrics_file.close()

    def __repr__(self) -> str:
        return (
            f"Regime(preset={self.preset!r}, step={self.step_count}, "
            f"total_steps={self._total_steps}, groups={self.group_names}, "
            f"controllers={[c.name for c in self.controllers]})"
        )


__all__ = ["GuardError", "Regime"]
