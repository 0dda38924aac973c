"""The Regime: one object that measures, guards, decides and steps the optimizer.

``regime.step(loss)`` reads in one screen (see :meth:`Regime.decide`); each line calls the
part that owns the job: ``measure`` (signals), ``guard`` (skip / roll back), the
controllers (propose), ``knobs`` (arbitrate and write ``param_groups``), the optimizer,
and the sinks (record). Trainers that call ``optimizer.step()`` themselves use the two
phases: :meth:`Regime.decide` before their step and :meth:`Regime.finish` after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cadence.checks import check_int, warn_user
from cadence.events import MemorySink, Sink
from cadence.protocol import Controller, Proposal, Signal
from cadence.regime import build, distributed
from cadence.regime.arbiter import Arbiter
from cadence.regime.bounds import check_bases, validate_bounds
from cadence.regime.guard import Guard, GuardError
from cadence.regime.knobs import Knobs
from cadence.regime.measure import Measurement, Measurer, observed_values
from cadence.regime.presets import resolve_preset
from cadence.regime.recovery import Recovery
from cadence.regime.run_folder import RunFolder, check_resume, resume_run
from cadence.regime.schedule import GroupSchedules
from cadence.regime.snapshot import BestSnapshot, best_preference
from cadence.regime.trials import Trials
from cadence.regime.views import RegimeViews

_UNSET: Any = type("PresetDefault", (), {"__repr__": lambda self: "<preset default>"})()


class Regime(RegimeViews):
    """Adaptive training regime around a torch optimizer.

    Call ``regime.step(loss)`` after ``loss.backward()`` instead of ``optimizer.step()`` and
    ``optimizer.zero_grad()``. Hyper-parameters stay in ``optimizer.param_groups`` (see
    ``cadence.regime.knobs``): the lr is ``cadence_base_lr × schedule(step) × multiplier``.

    Args:
        optimizer: any ``torch.optim.Optimizer``; knobs it lacks are skipped with a warning.
        total_steps: planned number of real optimizer updates (needed by ``"cosine"``).
        preset: ``"auto"`` (default), ``"constant"``, ``"cosine"``, ``"plateau"``,
            ``"clara"``, ``"hypergradient"`` or any registered preset (``register_preset``).
        controllers: extra controllers (``Controller`` objects or registered names).
        schedule: replaces the preset's lr schedule: one callable ``step -> multiplier`` or
            ``{group name or fnmatch pattern: schedule}``.
        log_dir: run folder (``config.json``, ``events.jsonl``, ``metrics.jsonl``,
            ``snapshot.pt``; rank 0 only); ``None`` keeps everything in memory.
        warmup_steps: warmup length of the preset's schedule (and ``Context.warmup_steps``).
        bounds: ``{knob: (lo, hi)}`` absolute bounds; for ``lr`` they bound base × multiplier.
        max_change: largest factor a knob may move by per step (``None``: unlimited); the
            guard's cut is exempt.
        max_lr_spread: largest ratio between the lr multipliers of two groups (``None``).
        smoothing: in [0, 1); fraction of a requested change deferred to later steps.
        clip_norm: global gradient-norm clipping threshold (a controllable knob),
            ``"adaptive"`` (a high percentile of recent norms) or ``None``; default: the
            preset's (none for the built-in presets).
        scaler: a ``torch.amp.GradScaler``; the Regime unscales before measuring, steps
            through it, and does not count the steps it skips.
        accumulation_steps: call ``step(loss)`` after every micro-batch; the optimizer
            steps on every k-th call.
        metrics_every: write a metrics record every this many real steps.
        snapshot_every: take a known-good snapshot (for rollback) every this many steps;
            0 disables snapshots (a rollback then only cuts the lr).
        guard: ``True`` (default), ``False``/``None`` (no guard: non-finite steps are not
            skipped), a ``dict`` of :class:`Guard` arguments, or a ``Guard``.
        signals: extra ``Signal`` objects or registered names.
        seed: seeds ``regime.generator`` (saved in the state) for controllers that draw.
        resume: ``False`` (default): a ``log_dir`` that already holds a run is refused;
            ``True``: continue that run from its ``snapshot.pt`` (parameters, optimizer and
            Regime state) and append to its files; ``"append"``: append only (the caller
            restores the state, as the trainer integrations do from their checkpoints).
        keep_lr: keep the lr you set: no scale rule replaces it (trials may still move it
            on evidence). Without it, ``auto`` replaces an lr far from its prior, warning once.
        best_metric: the observed metric whose best value picks the weights
            :meth:`best_state` / :meth:`restore_best` give back: a name (``"val_loss"``;
            minimised when it ends in ``"loss"``, else maximised) or a ``(name, "min" |
            "max")`` pair. Default: ``val_acc`` when observed, else ``val_loss``. Naming one
            keeps the best weights under any preset (``auto`` always keeps them).

    Attributes:
        events: every Event so far (on every rank). signals: the latest signal values.
        step_count: real optimizer updates done. sinks: receivers of events and metrics.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int | None = None,
        preset: str = "auto",
        controllers: Sequence[Controller | str] | None = None,
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
        signals: Sequence[Signal | str] | None = None,
        seed: int | None = None,
        keep_lr: bool = False,
        best_metric: str | tuple[str, str] | None = None,
        resume: bool | str = False,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if not any(g["params"] for g in optimizer.param_groups):
            raise ValueError("optimizer has no parameters; build it from model.parameters()")
        build.refuse_self_adapting(optimizer)
        self.optimizer = optimizer
        self._total_steps = None if total_steps is None else check_int("total_steps", total_steps)
        self._warmup_arg = None if warmup_steps is None else check_int("warmup_steps",
                                                                        warmup_steps, 0)
        self.accumulation_steps = check_int("accumulation_steps", accumulation_steps)
        self.metrics_every = check_int("metrics_every", metrics_every)
        self.snapshot_every = check_int("snapshot_every", snapshot_every, 0)
        seed = build.check_seed_scaler_log_dir(seed, scaler, log_dir)
        self.scaler, self.seed, self.preset = scaler, seed, preset
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)
        self.group_names = build.group_names(optimizer)

        plan = resolve_preset(preset, self._total_steps, self._warmup_arg)
        given_bounds = validate_bounds(bounds)
        self.user_bounds = {**validate_bounds(plan.options.get("bounds")), **given_bounds}
        self.warmup_steps = int(plan.options.get("warmup_steps", self._warmup_arg or 0))
        self.clip_mode = build.clip_mode(plan.options.get("clip_norm") if clip_norm is _UNSET
                                         else clip_norm)
        self.guard = build.make_guard(plan.options.get("guard", True) if guard is _UNSET
                                      else guard, self.clip_mode)
        self._user_schedule = schedule
        self._plan_total = self._total_steps
        self._replans: list[list[int]] = []
        self.schedules = GroupSchedules(schedule if schedule is not None else plan.schedule,
                                        self.group_names)
        fixed_clip = self.clip_mode if isinstance(self.clip_mode, float) else None
        self.knobs = Knobs(optimizer, self.group_names, self.schedules, self.user_bounds,
                           fixed_clip)
        check_bases(given_bounds, {n: {k: self.knobs.base(n, k) for k in self.knobs.available[n]}
                                   for n in self.group_names})

        self.keep_lr = bool(keep_lr)
        self._user_controllers, self.controllers = build.controllers(plan.controllers,
                                                                     controllers, self.keep_lr)
        self._user_signals, self.signal_objs = build.signals(plan.signals, signals,
                                                             self.controllers)
        self.measure = Measurer(optimizer, self.group_names, self.signal_objs,
                                self.accumulation_steps)
        self.arbiter = Arbiter(max_change, max_lr_spread, smoothing)
        self.trials = (Trials(self._total_steps, **plan.options.get("trials", {}))
                       if any(c.proposes_trials for c in self.controllers) else None)
        self.recovery = Recovery(optimizer, self.guard, scaler, self.snapshot_every,
                                 keep_initial=any(c.may_restart for c in self.controllers))
        self.snapshot = self.recovery.snapshot
        self.best_metric = best_metric
        self.best = (BestSnapshot(optimizer, best_preference(best_metric))
                     if plan.options.get("keep_best") or best_metric is not None else None)

        self.step_count = 0
        self.signals: dict[str, float] = {}
        self.metrics: dict[str, float] = {}
        self.metrics_step: int | None = None
        self._event_offset = 0
        self._decided: Measurement | None = None
        self._memory = MemorySink()
        self.sinks: list[Sink] = [self._memory]
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.run_folder: RunFolder | None = None
        if self.log_dir is not None and distributed.rank() == 0:
            self.run_folder = RunFolder(self.log_dir, self.config(), bool(resume))
            self.sinks.append(self.run_folder)
        self._snapshot_path = self.run_folder.snapshot_path if self.run_folder else None
        self.knobs.write_lr(0)
        if check_resume(resume, log_dir) is True:  # continue from the folder's snapshot
            resume_run(self)

    # -- the step -----------------------------------------------------------------------------
    def step(self, loss: torch.Tensor, closure: Callable[[], Any] | None = None) -> bool:
        """Measure, guard, adapt and step the optimizer; ``True`` iff the optimizer stepped.

        Call after ``loss.backward()`` (with accumulation: after every micro-batch). Zeroes
        the gradients whenever a real update (or a skip) happens.
        """
        if not self.decide(loss, closure):
            return False
        if self.scaler is not None:
            self.scaler.step(self.optimizer, *([closure] if closure else []))
            self.scaler.update()
        else:
            self.optimizer.step(*([closure] if closure else []))
        self.finish()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def decide(self, loss: torch.Tensor, closure: Callable[[], Any] | None = None) -> bool:
        """Phase one: measure, guard, propose, arbitrate and write the knobs for this update.

        ``True`` when the optimizer should step now (then call :meth:`finish` after it);
        ``False`` on a micro-batch, or when the guard skipped or rolled back (the gradients
        are dropped, so an optimizer step would change nothing).
        """
        if not self.measure.add_micro_batch(loss):
            return False
        self._log(self.knobs.adopt_outside_changes(self.step_count, self.signals))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        m = self.measure.measure(self.step_count, closure)
        clip_at = self.knobs.clip_threshold(self.recovery.clip_threshold())
        trial_open = self.trials is not None and self.trials.open is not None
        verdict, reason = self.recovery.verdict(m, trial_open)
        if verdict in ("skip", "rollback"):
            self.signals.update(m.raw)
            if self.trials is not None:  # a trial under way is judged lost
                self._log(self.trials.abort(m.step, reason, self.signals))
            self._log(self.recovery.act(m, verdict, reason, self.knobs, self.arbiter,
                                        self.signals))
            return False
        if verdict in ("shift", "checked"):  # a data shift, or a drift check's end: log, train on
            self._log(self.recovery.act(m, verdict, reason, self.knobs, self.arbiter,
                                        self.signals))
        self.signals.update(self.measure.derive(m))
        if not trial_open:  # a tentative state is not known-good until its trial is kept
            self.recovery.keep_snapshot(m.step, self._snapshot_path, self.state_dict)
        proposals = self._propose(m.step) + self.recovery.reintroduce(m.step)
        if self.trials is not None:  # open, judge, keep or revert tentative changes
            self.trials.record(m.step, m.loss)
            proposals, events = self.trials.judge(proposals, m.step, self.signals)
            self._log(events)
        if any(p.restart for p in proposals) and self._restart(m.step, proposals):
            return False  # started over from the initial weights: this update is dropped
        self._log(self.knobs.decide(self.arbiter, proposals, m.step, self.signals))
        if self.trials is not None:  # a harmful trial's weights go; a new one's are kept
            undone = self.recovery.undo_trial(m.step, self.trials.pop_restore())
            if self.trials.open is not None and self.trials.open.start == m.step:
                self.recovery.keep_snapshot(m.step, self._snapshot_path, self.state_dict, True)
            if undone:
                self._log(undone)
                return False
        if clip_at is not None:
            self.signals["clip_threshold"] = clip_at
            self.knobs.clip(m.grads, m.grad_norm, clip_at)
        self._decided = m
        return True

    def finish(self) -> None:
        """Phase two, after the optimizer stepped: count the update, show the next lr."""
        m, self._decided = self._decided, None
        if m is None:
            return
        self.measure.after_step(m)
        self.step_count += 1
        if self._total_steps is not None and self.step_count == self._total_steps + 1:
            warn_user(
                f"the Regime went past its total_steps={self._total_steps} updates: the "
                "schedule stays at its end; call regime.replan(new_total) to train longer")
        self.knobs.write_lr(self.step_count)  # the lr of the next update, as a torch scheduler
        if self.step_count % self.metrics_every == 0:
            self._write_metrics(m.loss, None)

    def _propose(self, step: int) -> list[Proposal]:
        """Every controller's proposals, from the signals and what it may know of the run."""
        if not self.controllers:
            return []
        context = build.context(self, step)
        return [p for c in self.controllers for p in c.propose(self.signals, context)]

    # -- validation ---------------------------------------------------------------------------
    def observe(self, *args: Any, **metrics: float | torch.Tensor) -> None:
        """Record observed metrics (``val_loss=...``) for the controllers that use them.

        Values are finite numbers (Python, numpy or one-element tensors). A name that no
        controller reads is kept for the dashboard, unless it looks like a typo of one that
        is read (``val_los``): that is an error. Under ``torch.distributed`` every rank must
        call it (values are averaged over ranks).
        """
        if args:
            raise TypeError(f"observe() takes metrics by name, e.g. observe(val_loss=0.3); "
                            f"got {len(args)} positional value(s) {args!r}")
        read = build.metrics_read(self.controllers)
        if self.best is not None:
            read |= {name for name, _ in self.best.preference}
        reduced = observed_values(metrics, read)
        self.metrics.update(reduced)
        self.metrics_step = self.step_count
        if self.best is not None:
            self.best.offer(self.step_count, reduced)
        self._write_metrics(self.signals.get("loss"), reduced)


__all__ = ["GuardError", "Regime"]
