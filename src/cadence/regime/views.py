"""What a Regime shows and keeps: its knob values, events, configuration, state, snapshots
and best-by-validation weights, closing its sinks, building it from a configuration file,
re-planning its horizon and starting over (a restart). The step loop is in ``core``; this
base class holds the rest of the public surface so that the loop reads on its own."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cadence.checks import check_int
from cadence.events import Event, MemorySink, Sink
from cadence.regime.config import construct, describe
from cadence.regime.state import load_regime_state, regime_state

if TYPE_CHECKING:
    import torch

    from cadence.protocol import Controller, Proposal
    from cadence.regime.arbiter import Arbiter
    from cadence.regime.knobs import Knobs
    from cadence.regime.measure import Measurer
    from cadence.regime.recovery import Recovery
    from cadence.regime.run_folder import RunFolder
    from cadence.regime.schedule import GroupSchedules
    from cadence.regime.snapshot import BestSnapshot, Snapshot
    from cadence.regime.trials import Trials


_V = TypeVar("_V", bound="RegimeViews")


class RegimeViews:
    """The Regime's public surface besides the step loop (``cadence.Regime`` inherits it)."""

    # set by Regime.__init__
    knobs: Knobs
    group_names: list[str]
    controllers: list[Controller]
    preset: str
    step_count: int
    metrics_every: int
    metrics_step: int | None
    signals: dict[str, float]
    sinks: list[Sink]
    run_folder: RunFolder | None
    snapshot: Snapshot
    best: BestSnapshot | None
    _memory: MemorySink
    _total_steps: int | None
    _replans: list[list[int]]
    schedules: GroupSchedules
    trials: Trials | None
    recovery: Recovery
    measure: Measurer
    arbiter: Arbiter
    _snapshot_path: Path | None

    def _log(self, events: list[Event]) -> None:
        """Hand each event to every sink (the memory sink, the run folder, the user's)."""
        for event in events:
            for sink in self.sinks:
                sink.write(event)

    @classmethod
    def from_config(
        cls: type[_V], optimizer: torch.optim.Optimizer, path: str | Path, **overrides: Any
    ) -> _V:
        """Build a Regime from a configuration file (TOML, YAML, JSON or a ``config.json``).

        Every ``ValueError`` about the configuration is a ``ConfigError`` naming the file,
        including those only the optimizer can reveal (a bound that excludes a group's lr, a
        schedule for a group that does not exist).
        """
        return construct(cls, optimizer, path, overrides)

    def replan(self, total_steps: int) -> None:
        """Change the horizon: stretch the rest of every schedule to ``total_steps``.

        Logs a ``"replan"`` event. The part of the schedule already run is unchanged.
        """
        new, old = check_int("total_steps", total_steps), self._total_steps
        if new == old:
            return
        if new <= self.step_count:
            raise ValueError(
                f"total_steps={new} is not beyond the {self.step_count} steps already done"
            )
        reason = f"total_steps set to {new} (schedule unchanged: it had no horizon)"
        if old is not None:
            self._replan_schedules(self.step_count, old, new)
            reason = (f"total_steps {old} -> {new}: remaining schedule stretched from step "
                      f"{self.step_count}")
        self._total_steps = new
        if self.trials is not None:
            self.trials.total_steps = new
        self._log([Event(self.step_count, None, None, old, new, "regime", reason,
                         dict(self.signals), "replan")])
        self.knobs.write_lr(self.step_count)

    def _replan_schedules(self, at: int, old: int, new: int, origin: int | None = None) -> None:
        """Re-plan every group's schedule (``GroupSchedules.replan``) and record it, so a
        resumed run rebuilds the same schedule (``state.load_regime_state``)."""
        self.schedules.replan(at, old, new, origin)
        self._replans.append([at, old, new] if origin is None else [at, old, new, origin])
        self.knobs.forget_schedule_cache()

    def _restart(self, step: int, proposals: list[Proposal]) -> bool:
        """Start over, as a controller's ``restart`` proposal asks: the initial weights
        and optimizer state back, the lr scaled by its factor, the whole schedule replayed
        over the steps left, signals and guard as new, no more trials; other proposals of
        this update are dropped. ``False`` (the proposal then acts as a plain lr cut, and
        an event says why) without a horizon to replay into or an initial copy of the
        weights (a resumed run: checkpoints do not hold it)."""
        ask = next(p for p in proposals if p.restart)
        total = self._total_steps
        why = ("no total_steps to replay the schedule into" if total is None
               else "no steps left" if step >= total - 1
               else None if self.recovery.restart()
               else "no initial weights (a resumed run: checkpoints do not hold them)")
        if why is not None:
            self._log([Event(step, None, None, None, None, ask.source,
                             f"no restart ({why}): the lr is cut instead", dict(self.signals),
                             "change")])
            return False
        assert total is not None  # else ``why`` said so
        events = [Event(step, None, None, None, None, ask.source, ask.reason,
                        dict(self.signals), "restart")]
        if self.trials is not None:
            events += self.trials.stop(step, "the run restarts", self.signals)
        self.measure.restart()
        self.signals = {}
        self._replan_schedules(step, total, total, origin=0)
        events += self.knobs.decide(self.arbiter, [replace(ask, restart=False)], step,
                                    self.signals)
        self.knobs.write_lr(step)
        self.recovery.keep_snapshot(step, self._snapshot_path, self.state_dict, now=True)
        self._log(events)
        return True

    def _write_metrics(self, loss: float | None, observed: dict[str, float] | None) -> None:
        record: dict[str, Any] = {"step": self.step_count, "time": time.time(), "loss": loss,
                                  "values": self.values(), "signals": dict(self.signals)}
        if observed is not None:
            record["metrics"] = dict(observed)
        for sink in self.sinks:
            sink.metrics(record)

    def best_state(self) -> dict[str, Any] | None:
        """The best-by-validation weights seen by :meth:`observe` (by ``best_metric``;
        by default ``val_acc`` when it is observed, else ``val_loss``):
        ``{"step", "metric", "value", "params"}`` with one CPU tensor per optimizer
        parameter, in group order; ``None`` before any observation or when the preset
        keeps none (``auto`` keeps it)."""
        return self.best.state() if self.best is not None else None

    def restore_best(self) -> bool:
        """Put the best-by-validation weights (and their optimizer state) back, as Hugging
        Face's ``load_best_model_at_end`` does; ``True`` iff there was one to restore."""
        return self.best is not None and self.best.restore()

    # -- views, configuration and state -------------------------------------------------------
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
        out = self.knobs.values(self.step_count)
        if group is None:
            return out
        if group not in out:
            raise ValueError(f"unknown group {group!r}; groups are {self.group_names}")
        return out[group]

    def config(self) -> dict[str, Any]:
        """The configuration, as ``config.json`` records it (see ``regime.config.describe``)."""
        return describe(self)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly (plain data + one RNG tensor)."""
        return regime_state(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; ``ValueError`` if it is from another setup.

        If this Regime was built with a different ``total_steps`` than the saved run, the
        rest of the schedule is re-planned explicitly (a ``"replan"`` event), never silently.
        """
        load_regime_state(self, state)

    def load_snapshot(self, path: str | Path | None = None) -> None:
        """Go back to a known-good snapshot on disk (``log_dir/snapshot.pt`` by default):
        parameters, optimizer state and the Regime's state as they were when it was taken.
        The file is read with ``weights_only=True``: a crafted file is refused, not run."""
        if path is None:
            if self.run_folder is None:
                raise ValueError("load_snapshot() needs a path when the Regime has no log_dir")
            path = self.run_folder.snapshot_path
        extra = self.snapshot.load(path)
        self.snapshot.restore()
        self.load_state_dict(extra["regime"])

    def close(self) -> None:
        """Write a last metrics record if the last step has none (so a run folder ends at
        the step it reached), then close the sinks; files are flushed after every line
        anyway. ``with Regime(...) as regime:`` calls it on leaving the block."""
        recorded = (self.step_count % self.metrics_every == 0
                    or self.metrics_step == self.step_count
                    or getattr(self, "_closed_at", None) == self.step_count)
        if self.step_count and not recorded:
            self._write_metrics(self.signals.get("loss"), None)
        self._closed_at = self.step_count
        for s in self.sinks:
            s.close()

    def __enter__(self: _V) -> _V:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Regime(preset={self.preset!r}, step={self.step_count}, "
            f"total_steps={self._total_steps}, groups={self.group_names}, "
            f"controllers={[c.name for c in self.controllers]})"
        )
