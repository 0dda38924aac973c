"""When a step goes wrong: the guard's verdict, skipping, rolling back, snapshots.

The Regime asks :meth:`Recovery.verdict` about every measured step before any controller
runs. A skip drops the gradients (NaN never reaches the weights); a rollback restores the
last known-good snapshot and cuts the lr at once through the knobs (an urgent proposal
the arbiter does not clamp); a shift (the restored weights spike too) is logged and the
run trains on. Snapshots are taken here every ``snapshot_every`` healthy steps and, with
a run folder, written to disk.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from cadence.events import Event
from cadence.protocol import Proposal
from cadence.regime.arbiter import Arbiter
from cadence.regime.guard import Guard, GuardError
from cadence.regime.knobs import Knobs
from cadence.regime.measure import Measurement
from cadence.regime.snapshot import Snapshot


class Recovery:
    """The guard, the snapshot and the GradScaler's overflow skips, in one place."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, guard: Guard | None, scaler: Any,
        snapshot_every: int, keep_initial: bool = False,
    ) -> None:
        self.optimizer, self.guard, self.scaler = optimizer, guard, scaler
        self.snapshot_every = snapshot_every
        self.snapshot = Snapshot(optimizer)
        self.held = Snapshot(optimizer)  # the current weights, during a drift check
        #: the weights before the first update, which a restart goes back to (kept only
        #: when a controller may restart; not in checkpoints, so not after a resume)
        self.initial = Snapshot(optimizer, offload=True) if keep_initial else None
        self._fresh_guard = copy.deepcopy(guard.state_dict()) if guard is not None else None

    def clip_threshold(self) -> float | None:
        """The guard's adaptive clipping threshold, from earlier steps only (ask before
        :meth:`verdict`: an outlier must not vote on its own threshold)."""
        return self.guard.clip_threshold() if self.guard is not None else None

    def verdict(self, m: Measurement, trial_open: bool = False) -> tuple[str, str]:
        """``("ok" | "skip" | "rollback" | "shift" | "checked", reason)`` for this step.
        While a trial is open a drift alarm starts no drift check: the trial's own move
        explains a rise of the loss, and the trial's verdict reverts it if it hurts."""
        if self.scaler is not None and m.raw["nonfinite"] > 0 and math.isfinite(m.raw["loss"]):
            return "skip", "GradScaler found inf/NaN gradients"
        if self.guard is None:
            return "ok", ""
        if not self.snapshot.valid:  # e.g. after a resume: nothing to test a drift against
            self.guard.reference = None
        try:
            verdict, reason = self.guard.check(m.raw, m.step, drift_checks=not trial_open)
        except GuardError as err:
            where = self.snapshot.path or "in memory only (set log_dir to keep it on disk)"
            raise GuardError(
                f"{err}. Last known-good snapshot: step {self.snapshot.step}, {where}"
            ) from None
        # the guard's test (restored weights) is the only confirmation of a data shift that
        # the drift response acts on: fresh at every step, so no stale value lingers
        m.raw["shift"] = 1.0 if verdict == "shift" else 0.0
        m.raw["shift.z"] = self.guard.shift_z if verdict == "shift" else 0.0
        return verdict, reason

    def act(
        self, m: Measurement, verdict: str, reason: str, knobs: Knobs, arbiter: Arbiter,
        signals: Mapping[str, float],
    ) -> list[Event]:
        """Carry out a verdict other than ``ok``: a ``shift`` is recorded and training goes
        on; a ``skip`` drops the gradients; a ``rollback`` also restores the snapshot and
        cuts the lr. Returns the events to log."""
        if verdict == "shift":
            return [Event(m.step, None, None, None, None, "guard", reason, m.raw, "drift")]
        if verdict == "checked":  # a drift check that found no shift: say so, train on
            return [Event(m.step, None, None, None, None, "guard", reason, m.raw, "change")]
        self._drop_update()
        if verdict == "skip":
            source = "scaler" if reason.startswith("GradScaler") else "guard"
            if self.guard is not None and self.guard.check_outcome in ("shift", "noise"):
                self.held.restore()  # a drift check ended: back to the current weights
            return [Event(m.step, None, None, None, None, source, reason, m.raw, "skip")]
        assert verdict == "rollback" and self.guard is not None
        if self.guard.checking is not None and self.snapshot.valid:  # a drift check starts
            self.held.take(m.step)
        if self.snapshot.valid:
            self.snapshot.restore()
            self.guard.rewind(self.snapshot.step)  # type: ignore[arg-type]
            reason = f"{reason}; restored the snapshot of step {self.snapshot.step}"
        else:
            reason = f"{reason}; no snapshot yet, parameters kept"
        events = [Event(m.step, None, None, None, None, "guard", reason, m.raw, "rollback")]
        events += knobs.decide(arbiter, self.guard.after_rollback(m.step), m.step, signals)
        knobs.write_lr(m.step)
        return events

    def undo_trial(self, step: int, start: int | None) -> list[Event]:
        """Restore the weights a harmful trial started from (the snapshot taken when it
        opened at ``start``); the update at hand is dropped, as after a rollback."""
        if start is None or self.guard is None or self.snapshot.step != start:
            return []
        self.snapshot.restore()
        self.guard.rewind(start)
        self._drop_update()
        reason = (f"a harmful trial's weights were replaced by those of step {start}, where "
                  "it started (not charged as a rollback)")
        return [Event(step, None, None, None, None, "trials", reason, {}, "rollback")]

    def restart(self) -> bool:
        """Put the initial weights and optimizer state back and forget the guard's history,
        as at the start; ``False`` (nothing done) when no initial copy is held."""
        if self.initial is None or not self.initial.valid:
            return False
        self.initial.restore()
        if self.guard is not None and self._fresh_guard is not None:
            self.guard.load_state_dict(copy.deepcopy(self._fresh_guard))
        self.snapshot.step = None  # what it held belongs to the run that was abandoned
        self._drop_update()
        return True

    def _drop_update(self) -> None:
        """The update at hand will not be stepped: close the GradScaler's iteration (it
        has unscaled) and drop the gradients."""
        if self.scaler is not None:
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def reintroduce(self, step: int) -> list[Proposal]:
        """The guard's next step in giving back an lr cut, if one is due."""
        return self.guard.reintroduce(step) if self.guard is not None else []

    def keep_snapshot(
        self, step: int, path: Path | None, state: Callable[[], dict[str, Any]],
        now: bool = False,
    ) -> None:
        """Take the known-good snapshot when one is due, or ``now`` (a trial starts), and
        write it to ``path``. Before the first update, also keep the initial weights."""
        if self.initial is not None and step == 0 and not self.initial.valid:
            self.initial.take(0)
        if self.guard is None or not self.snapshot_every or (step % self.snapshot_every
                                                             and not now):
            return
        self.snapshot.take(step)
        self.guard.mark_reference(step)
        if path is not None:
            self.snapshot.save(path, {"regime": state()})


__all__ = ["Recovery"]
