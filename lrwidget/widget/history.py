"""The widget's history: every lr_find (`finds`) and Fit (`runs`), drawn in the runs panel and on the lr_find chart
(earlier curves, the map of rates tried), written to and read from a history file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..core.find_result import LRFindResult
from ..core.interface import Driven
from . import runs as runs_io
from .charts import LRFindChart
from .layout import ui
from .runs import Run, best_index, outcome, thin
from .runs_panel import RunsPanel, rate_colors, rate_names

EARLIER = 5  # earlier lr_find curves drawn behind the current one


class History:
    """The runs and lr_find results of a widget, the runs panel that shows them, and their marks on `chart`.

    `on_pick(i)` is called when a row of the runs table is clicked."""

    def __init__(self, chart: LRFindChart, lock: threading.RLock, on_pick: Callable[[int], None]):
        self._ui_lock, self.chart = lock, chart
        self.runs: list[Run] = []
        self.finds: list[LRFindResult] = []
        self.panel = RunsPanel(on_pick)

    def record_fit(self, learn: Driven, n: int, lo: float, hi: float, code: str, from_start: bool, sweep: bool) -> None:
        """`learn.fit_one_cycle(n, lr_max=slice(lo, hi))`, recorded as a Run however it ends (in the run's thread)."""
        before, t0 = learn.run, time.monotonic()
        try:
            learn.fit_one_cycle(n, lr_max=slice(lo, hi))
        finally:
            run, rec = learn.run, learn.recorder
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
                self.show()

    def add_find(self, res: LRFindResult) -> None:
        self.finds.append(res)

    def save(self, path: str | Path) -> tuple[Path, int, int]:
        """Write the lr_find curves and runs to `path` as JSON; the path and how many of each."""
        with self._ui_lock:
            finds, runs = list(self.finds), list(self.runs)
        return runs_io.save_history(path, finds, runs), len(finds), len(runs)

    def load(self, path: str | Path) -> list[LRFindResult]:
        """Add the lr_find curves and runs of a history file, marked as loaded; a broken file changes nothing.
        Returns the curves added."""
        finds, runs = runs_io.load_history(path)  # every entry checked before anything is added
        for r in runs:
            r.loaded = True
        with self._ui_lock:
            self.finds += finds
            self.runs += runs
            self.show()
        return finds

    @ui
    def show(self) -> None:
        """Redraw the runs panel and the map of rates tried on the lr_find chart."""
        self.panel.show(self.runs)
        self.chart.show_rates(
            [r.lr_steep for r in self.runs], rate_colors([outcome(r) for r in self.runs]), rate_names(self.runs)
        )

    @ui
    def show_earlier(self, current: LRFindResult | None) -> None:
        """The other lr_find curves (the last EARLIER of them) than `current`, faintly behind it."""
        others = [f for f in self.finds if f is not current and len(f.lrs)][-EARLIER:]
        self.chart.show_earlier([(f.lrs, f.losses) for f in others])

    def best_said(self, first: int = 0) -> str:
        """Which of the runs from `first` on did best, by validation loss."""
        j = best_index(self.runs[first:])
        if j is None:
            return "no run has a finite loss"
        i = first + j
        r = self.runs[i]
        return f"best by validation loss: run #{i}, lr {r.lr_steep:.4g} ({r.label}, {outcome(r):.4f})"
