"""The widget's history: every lr_find (`finds`), Fit and search probe (`runs`) and search (`searches`), drawn in the
runs panel with the chart of how much the rate matters, and on the lr_find chart (earlier curves, the map of rates
tried), written to and read from a history file."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.find_result import LRFindResult
from ..core.interface import Driven
from ..core.search import LRSearchResult
from . import runs as runs_io
from .charts import LRFindChart
from .layout import ui
from .runs import Run, outcome, ranked, thin
from .runs_panel import RunsPanel, rate_colors, rate_names
from .sensitivity import SensitivityView

EARLIER = 5  # earlier lr_find curves drawn behind the current one


class History:
    """The runs and lr_find results of a widget, the runs panel that shows them, and their marks on `chart`.

    `on_pick(i)` is called when a row of the runs table is clicked."""

    def __init__(self, chart: LRFindChart, lock: threading.RLock, on_pick: Callable[[int], None]):
        self._ui_lock, self.chart = lock, chart
        self.runs: list[Run] = []
        self.finds: list[LRFindResult] = []
        self.searches: list[LRSearchResult] = []  # the widget's searches, in order (search k: [k - 1])
        self.sensitivity = SensitivityView()
        self.panel = RunsPanel(on_pick, below=self.sensitivity)

    def record_fit(
        self, learn: Driven, n: int, lo: float, hi: float, code: str, from_start: bool, start: str, sweep: bool
    ) -> None:
        """`learn.fit_one_cycle(n, lr_max=slice(lo, hi))`, recorded as a Run however it ends (in the run's thread);
        `start` names the start it began at ('' if it goes on from the weights as they are)."""
        before, t0 = learn.run, time.monotonic()
        try:
            learn.fit_one_cycle(n, lr_max=slice(lo, hi))
        finally:
            ran = learn.run is not None and learn.run is not before  # False: it failed before its first batch
            self.record(learn, ran, time.monotonic() - t0, lr_min=lo, lr_steep=hi, epochs=n, code=code,
                        from_start=from_start, sweep=sweep, start=start)  # fmt: skip

    def record(self, learn: Driven, ran: bool, seconds: float, **fields: Any) -> Run:
        """The run that just ended on `learn` (its run and recorder; `ran` False: it failed before its first batch) as
        a Run of `fields` (lr_min, lr_steep, epochs, code, from_start, start, ...), added and shown."""
        run, rec = learn.run, learn.recorder
        batches, losses = thin(rec.losses) if ran else ([], [])
        record = Run(
            metric_names=list(rec.metric_names) if ran else [],
            values=[[float(v) for v in row] for row in rec.values] if ran else [],
            losses=losses,
            end_reason=run.end_reason if ran else "error",
            seconds=seconds,
            batches=batches,
            n_iter=run.n_iter if ran else 0,
            steps=run.total if ran else 0,
            iters=list(rec.iters) if ran else [],
            **fields,
        )
        with self._ui_lock:
            self.runs.append(record)
            self.show()
        return record

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
            if r.start:  # another kernel's start: comparable with the runs of its own file only
                r.start = f"{r.start} of {Path(path).name}"
        with self._ui_lock:
            self.finds += finds
            self.runs += runs
            self.show()
        return finds

    @ui
    def show(self) -> None:
        """Redraw the runs panel and the map of rates tried on the lr_find chart."""
        members, best, ranked_as = ranked(self.runs)
        self.panel.show(self.runs, best, ranked_as)
        scores = [outcome(r) if i in members else math.nan for i, r in enumerate(self.runs)]  # grey: not ranked
        self.chart.show_rates([r.lr_steep for r in self.runs], rate_colors(scores), rate_names(self.runs))
        self.sensitivity.show(self.runs, self.finds, self.searches)

    @ui
    def show_earlier(self, current: LRFindResult | None) -> None:
        """The other lr_find curves (the last EARLIER of them) than `current`, faintly behind it."""
        others = [f for f in self.finds if f is not current and len(f.lrs)][-EARLIER:]
        self.chart.show_earlier([(f.lrs, f.losses) for f in others])

    def best_said(self) -> str:
        """Which run did best, as the panel's title and star say: among runs of the same length from the same start."""
        members, best, ranked_as = ranked(self.runs)
        if best is None:
            return f"no best: every one of {ranked_as} diverged" if members else "no best yet: one run of its kind"
        r = self.runs[best]
        by = "validation loss" if math.isfinite(r.valid_loss) else "training loss"
        return f"best of {ranked_as} by {by}: run #{best}, lr {r.lr_steep:.4g} ({r.label}, {outcome(r):.4f})"
