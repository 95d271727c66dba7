"""Comparing rates: the runs of a widget, the same start each Fit can begin from, the map of rates, the history."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import traitlets as T

from ..core.find_result import LRFindResult
from ..state import snapshot as snapshots
from . import runs as runs_io
from .layout import ui
from .markers import Markers
from .runs import Run, best_index, outcome, thin
from .runs_panel import rate_colors, rate_names

EARLIER = 5  # earlier lr_find curves drawn behind the current one


class Comparing(Markers):
    """The markers' view with a record of every Fit (`runs`, `finds`), a same start (`from_start`) and a history."""

    from_start = T.Bool(False, help="each Fit first puts back the weights, optimizer and random state of the start")
    _start_state: Any = None  # also for close() on a widget whose __init__ failed

    def __init__(self, epochs: int, **kwargs: Any):
        self.runs: list[Run] = []
        self.finds: list[LRFindResult] = []
        # one exact copy (learn.take_state), taken at the first Fit: in host memory, or on disk when memory is short
        self._start_state = None
        self._took_start = False  # the running Fit took the start (its status says where it went)
        super().__init__(epochs, **kwargs)
        T.link((self, "from_start"), (self.from_start_box, "value"))
        self.runs_panel.on_pick = self.use_run
        self.reset_button.on_click(lambda _: self._said(self.reset))

    # -- public API ---------------------------------------------------------------------------------

    @property
    def has_start(self) -> bool:
        """True once there is a start to go back to (the first Fit took it, or mark_start())."""
        return self._start_state is not None

    def mark_start(self) -> None:
        """Take the learner's state now as the start that Fits (with `from_start`), sweeps and reset() go back to."""
        with self.learn.guard("mark_start"):  # RuntimeError while a run holds the learner
            # the new copy first: one refused (a full disk) leaves the old start; "auto" counts the old one's memory
            saved = self.learn.take_state()
            self._drop_start()
            self._start_state = saved
        self._say(
            "start marked: fits with 'each fit from the same start', sweeps and Reset begin from this state"
            + self._start_said()
        )

    def reset(self) -> None:
        """Put back the weights, optimizer and random state of the start."""
        if self._start_state is None:
            raise RuntimeError("there is no start to go back to yet: click Fit once, or call w.mark_start()")
        with self.learn.guard("reset"):
            self.learn.restore_state(self._start_state)
        self._say("reset: the weights, optimizer and random state are those of the start" + self._start_said())

    def use_run(self, index: int) -> None:
        """Put the markers at the rates of run `index` (what a click on its row does)."""
        r = self.runs[index]
        self._put_markers(r.lr_min, r.lr_steep)
        self._say(f"markers at run #{index}'s rates: lr_min={r.lr_min:.4g}, lr_steep={r.lr_steep:.4g}")

    def save_history(self, path: str | Path) -> Path:
        """Write this widget's lr_find curves and runs to `path` as JSON."""
        with self._ui_lock:
            finds, runs = list(self.finds), list(self.runs)
        path = runs_io.save_history(path, finds, runs)
        self._say(f"history saved to {path}: {len(finds)} lr_find curves, {len(runs)} runs")
        return path

    def load_history(self, path: str | Path) -> None:
        """Add the lr_find curves and runs of a history file, marked as loaded; a broken file changes nothing."""
        finds, runs = runs_io.load_history(path)  # every entry checked before anything is added
        for r in runs:
            r.loaded = True
        with self._ui_lock:
            self.finds += finds
            self.runs += runs
            if self.result is None and finds:
                self._show_result(finds[-1])
            self._show_earlier()
            self._show_runs()
        self._say(f"loaded from {path}: {len(finds)} lr_find curves, {len(runs)} runs")

    # -- on the worker thread ---------------------------------------------------------------------

    def _at_start(self, restore: bool) -> None:
        """Take the start if there is none yet (this is the first Fit), else put it back when `restore`."""
        if self._start_state is None:
            self._start_state = self.learn.take_state()
            self._took_start = True
        elif restore:
            self.learn.restore_state(self._start_state)

    def _fit_recorded(self, n: int, lo: float, hi: float, code: str, from_start: bool, sweep: bool = False) -> None:
        """`learn.fit_one_cycle(n, lr_max=slice(lo, hi))`, recorded as a Run however it ends."""
        before, t0 = self.learn.run, time.monotonic()
        try:
            self.learn.fit_one_cycle(n, lr_max=slice(lo, hi))
        finally:
            run, rec = self.learn.run, self.learn.recorder
            ran = run is not None and run is not before  # False: it failed before its first batch
            batches, losses = thin(rec.losses) if ran else ([], [])
            record = Run(
                lr_min=lo,
                lr_steep=hi,
                epochs=n,
                code=code,
                metric_names=list(rec.metric_names) if ran else [],
                values=[[float(v) for v in row] for row in rec.values] if ran else [],
                losses=losses,
                end_reason=run.end_reason if ran else "error",
                seconds=time.monotonic() - t0,
                from_start=from_start,
                batches=batches,
                n_iter=run.n_iter if ran else 0,
                iters=list(rec.iters) if ran else [],
                sweep=sweep,
            )
            with self._ui_lock:
                self.runs.append(record)
                self._show_runs()

    # -- helpers ------------------------------------------------------------------------------------

    def _start_said(self) -> str:
        """Where the start is, when it is on disk ('' in memory): '; the start is 1.2 GiB on disk in /tmp/…'."""
        where = snapshots.said(self._start_state)
        return f"; the start is {where}" if where else ""

    def _drop_start(self) -> None:
        """Let go of the start: a copy on disk deletes its files now."""
        saved, self._start_state = self._start_state, None
        snapshots.discard(saved)

    @ui
    def _show_runs(self) -> None:
        """Redraw the runs panel and the map of rates tried on the lr_find chart."""
        self.runs_panel.show(self.runs)
        self.chart_view.show_rates(
            [r.lr_steep for r in self.runs], rate_colors([outcome(r) for r in self.runs]), rate_names(self.runs)
        )

    @ui
    def _show_earlier(self) -> None:
        """The widget's other lr_find curves (the last EARLIER of them), faintly behind the one shown."""
        others = [f for f in self.finds if f is not self.result and len(f.lrs)][-EARLIER:]
        self.chart_view.show_earlier([(f.lrs, f.losses) for f in others])

    def _best_said(self, first: int = 0) -> str:
        """Which of the runs from `first` on did best, by validation loss."""
        j = best_index(self.runs[first:])
        if j is None:
            return "no run has a finite loss"
        i = first + j
        r = self.runs[i]
        return f"best by validation loss: run #{i}, lr {r.lr_steep:.4g} ({r.label}, {outcome(r):.4f})"

    def _said(self, action: Any) -> None:
        """Run a button's action; its refusal goes to the status, not to a traceback nobody sees."""
        try:
            action()
        except RuntimeError as e:
            self._say(str(e))
