"""Peak-lr correction by trials: bracket the lr up or down until the evidence stops
favouring a move (the regime's trials judge each move; see ``cadence.regime.trials``).

After the warmup, while the run is in its exploration phase (by default its first half),
this controller proposes tentative ×``factor`` moves of every group's lr multiplier (one
common factor: the ratios between groups survive). The first move is up; a move that is
kept is followed by another in the same direction; after a first up-move is reverted the
controller tries down, a reverted move after kept ones, or a reverted down-move, ends the
search (AutoSGD's {½, 1, 2} neighbourhood, trials.md §7). One exception: an up-move that
was reverted although its effect pointed the right way (z < ``retry_z``, but short of the
bar) is inconclusive, not evidence against; it is tried once more with a window twice as
long, which has the power the first lacked (on the deterministic quadratic the loss curve
is so smooth that a 40-step window holds one effective sample). The schedule multiplies
the result, so the run still anneals from what was found and ends on time.

Down-moves are asymmetric (the short-horizon bias): on the training loss a smaller lr
nearly always looks better for a while, because it lowers the noise floor at once while
the progress it gives up shows only later (on the MNIST-1D MLP a ×½ trial was kept from the
prior's 0.014 although the tuned lr is 0.032). So a down-move opens only while the loss has
*stalled* (``TrialSpec.only_if_stalled``), and is judged with a horizon of two windows.

Windows follow the horizon: ``window = clip(round(window_fraction · total_steps),
min_window, max_window)``; a run shorter than ``min_window / window_fraction`` steps
(750 by default) has no trials, a burn-in of half a window, and a projection horizon of one
window for up-moves and two for down-moves (a decrease must also hold its progress, not
only drop the noise floor: the short-horizon bias guard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cadence.checks import check_float, check_int
from cadence.protocol import CONTROLLERS, Context, Controller, Proposal, Signals, TrialSpec


@CONTROLLERS.register("lr_trials")
class LRTrials(Controller):
    """Tentative ×factor moves of the lr, kept or reverted by the regime's trials.

    Args:
        factor: the move of one trial (> 1; a down-move divides by it).
        explore_until: fraction of ``total_steps`` by which every trial must have ended.
        window_fraction, min_window, max_window: the measured window (see module doc).
        max_trials: most trials this controller starts.
        retry_z: an up-move reverted with z below this (a favourable but insignificant
            effect) is retried once with a doubled window; ``-inf`` never retries.
    """

    name = "lr_trials"
    proposes_trials = True

    def __init__(
        self,
        factor: float = 2.0,
        explore_until: float = 0.5,
        window_fraction: float = 0.04,
        min_window: int = 30,
        max_window: int = 200,
        max_trials: int = 6,
        retry_z: float = -1.0,
    ) -> None:
        self.factor = check_float("factor", factor, 1.0)
        if self.factor == 1.0:
            raise ValueError("factor must be > 1")
        self.explore_until = check_float("explore_until", explore_until, 0.0, 1.0)
        self.window_fraction = check_float("window_fraction", window_fraction, 0.0, 1.0)
        self.min_window = check_int("min_window", min_window, 3)
        self.max_window = check_int("max_window", max_window, self.min_window)
        self.max_trials = check_int("max_trials", max_trials, 0)
        self.retry_z = float(retry_z)
        if not self.retry_z <= 0:
            raise ValueError(f"retry_z must be <= 0 (a favourable effect), got {retry_z!r}")
        self.direction = 1            # +1: up, -1: down, 0: search over
        self.kept_in_direction = 0
        self.seen = 0                 # outcomes of mine already read
        self.stretch = 1              # window multiplier: 2 while retrying an inconclusive move

    def long_enough(self, total_steps: int | None) -> bool:
        """A run is too short for trials when a window of ``window_fraction`` of it is
        below ``min_window``: each trial would take too large a share of the run (on the
        400-step char-LM two reverted trials cost 0.12 nats of test loss)."""
        return total_steps is None or self.window_fraction * total_steps >= self.min_window

    def window(self, total_steps: int | None) -> int:
        if total_steps is None:
            return self.min_window * 2 * self.stretch
        w = round(self.window_fraction * total_steps)
        return int(min(max(w, self.min_window), self.max_window)) * self.stretch

    def propose(self, signals: Signals, context: Context) -> list[Proposal]:
        """Propose the next move every step until the trials part opens it (it waits for
        a clean baseline and for its budget); nothing while a trial runs."""
        self._read_outcomes(context)
        if (self.direction == 0 or context.trial_open or context.in_warmup
                or self.seen >= self.max_trials):
            return []
        if not self.long_enough(context.total_steps):
            return []
        w = self.window(context.total_steps)
        burn = max(2, w // 2)
        if context.total_steps is not None and (
                context.step + burn + w > self.explore_until * context.total_steps):
            return []
        up = self.direction > 0
        if not up and context.step % max(1, w // 4):
            return []  # a stall is checked a few times per window, not every step
        f = self.factor if up else 1.0 / self.factor
        spec = TrialSpec(window=w, burn_in=burn, horizon=w if up else 2 * w,
                         only_if_stalled=not up)
        return [Proposal("lr", factor=f, source=self.name, trial=spec,
                         reason=f"is the lr too {'low' if up else 'high'}? try ×{f:.3g}")]

    def _read_outcomes(self, context: Context) -> None:
        """Steer by the trials that ended since the last call."""
        mine = [o for o in context.trials if o.source == self.name]
        for o in mine[self.seen:]:
            retry = self.stretch == 1 and self.direction > 0 and o.z < self.retry_z
            self.stretch = 1
            if o.kept:
                self.kept_in_direction += 1
            elif retry:
                self.stretch = 2               # inconclusive: once more, twice as long
            elif self.direction > 0 and self.kept_in_direction == 0:
                self.direction = -1            # up lost at once: try down once
            else:
                self.direction = 0             # the evidence stopped favouring a move
        self.seen = len(mine)

    def state_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "kept": self.kept_in_direction,
                "seen": self.seen, "stretch": self.stretch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.direction = int(state["direction"])
        self.kept_in_direction = int(state["kept"])
        self.seen = int(state["seen"])
        self.stretch = int(state.get("stretch", 1))


__all__ = ["LRTrials"]
