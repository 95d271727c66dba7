"""Sweep: short fits from the same start at several rates, one after another in one run, each recorded as a run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.interface import Driven
from . import calls, reports
from .history import History
from .reports import EARLY_ENDS
from .start import Start
from .training import TrainingView


class Sweeping:
    """The widget's Sweep button: `prepare` the fits, and say what came of them (`ended`). `say(text)` reports to the
    status; the live view `training` shows the rate running (its `phase`) and draws its fit's schedule (`rates`)."""

    def __init__(
        self, learn: Driven, start: Start, history: History, training: TrainingView, say: Callable[[str], None]
    ):
        self.learn, self.start, self.history, self.training, self.say = learn, start, history, training, say
        self.planned = 0  # the running (or last) sweep's rates

    def prepare(self, lrs: Any, n: int, lr_min: float, lr_steep: float) -> tuple[str, Callable[[], int]]:
        """The sweep's code and what runs it (its fits' count); ValueError for rates that are not rates."""
        rates, plan = calls.sweep_plan(lrs, lr_min, lr_steep)
        code = f"w.sweep(lrs={rates!r}, epochs={n!r})"

        def call() -> int:
            self.start.begin(restore=False)  # the start is taken now if there is none yet
            done = 0
            try:
                for i, (lo, hi) in enumerate(plan):
                    if self.learn.guard.signal is not None and self.learn.guard.signal.is_set():
                        break
                    self.start.restore()
                    self.training.phase = f"sweep rate {i + 1} of {len(plan)} · "
                    fit_code = calls.fit_code(n, lo, hi, self.learn.accum_steps)
                    self.say(f"sweep: rate {i + 1} of {len(plan)}, lr {hi:.4g}: {fit_code}")
                    self.training.rates = (lo, hi)
                    self.history.record_fit(self.learn, n, lo, hi, fit_code, True, self.start.name, sweep=True)
                    done += 1
                    if self.learn.run is not None and self.learn.run.end_reason in EARLY_ENDS:
                        break
            finally:
                self.training.phase = ""
                self.start.restore()  # after a Stop or an error too
            return done

        self.planned = len(plan)
        return code, call

    def ended(self, done: int) -> str:
        """What the status says at the sweep's end."""
        runs = self.history.runs
        last = runs[-1] if runs else None
        return reports.sweep_ended(done, self.planned, last, self.history.best_said(), self.start.said())
