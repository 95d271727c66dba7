"""The live training view: progress, the epoch table, the loss and schedule charts, and how often they redraw."""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from ..core.events import Observer
from ..core.interface import Driven
from .formats import fmt_time
from .style import var
from .train_charts import LossChart, SchedChart

REDRAW_INTERVAL = 0.1  # seconds: at most ~10 redraws a second
REDRAW_COST_RATIO = 40  # and at most ~1/40 of the training thread's time spent redrawing
SHOWN_ROWS, ROW_PX = 10, 22  # the epoch table's rows in view, and a row's height (line height and padding)


class LiveUpdates(Observer):
    """Passes one run's events on, redrawing at most every REDRAW_INTERVAL seconds (and at the end).

    `on_start(learn)` at the run's start, `on_redraw(learn, final)` while it runs and at its end; both are called on
    the training thread."""

    def __init__(self, on_start: Callable[[Driven], None], on_redraw: Callable[[Driven, bool], None]):
        self.on_start, self.on_redraw, self.next = on_start, on_redraw, 0.0
        self.redraws = 0  # how many times it redrew, the runs' ends included

    def fit_start(self, learn: Driven) -> None:
        self.on_start(learn)
        self.next = time.monotonic() + REDRAW_INTERVAL

    def batch_end(self, learn: Driven) -> None:
        t = time.monotonic()
        if t >= self.next:
            self._redraw(learn, False)
            done = time.monotonic()
            self.next = done + max(REDRAW_INTERVAL, (done - t) * REDRAW_COST_RATIO)

    def fit_end(self, learn: Driven, error: BaseException | None) -> None:
        self._redraw(learn, True)

    def _redraw(self, learn: Driven, final: bool) -> None:
        self.redraws += 1
        self.on_redraw(learn, final)


def epoch_table(names: list[str], values: list[list[float]], times: list[float]) -> str:
    """The per-epoch results as an HTML table (fastai's columns: epoch, losses, metrics, time), its header sticky:
    TrainingView keeps it in a box about 10 rows high that scrolls, at the newest (last) row unless scrolled up."""
    cell = "padding:2px 10px;text-align:right"
    th = f"style='{cell};position:sticky;top:0;background:var(--jp-layout-color0, #fff)'"
    head = "".join(f"<th {th}>{html.escape(n)}</th>" for n in names)
    rows = []
    for i, (vals, t) in enumerate(zip(values, times)):
        cells = [str(i), *(f"{v:.6f}" if math.isfinite(v) else "—" for v in vals), fmt_time(t)]
        rows.append("<tr>" + "".join(f"<td style='{cell}'>{c}</td>" for c in cells) + "</tr>")
    return (
        f"<table style='border-collapse:collapse;font-family:var(--jp-code-font-family, monospace);"
        f"line-height:{ROW_PX - 4}px'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def key(*entries: tuple[str, str, str]) -> str:
    """A chart's key as text: (role, mark, name) each, the mark in the role's colour, the name in the text colour."""
    return " &nbsp; ".join(f"<span style='color:{var(role)}'>{mark}</span> {name}" for role, mark, name in entries)


class TrainingView:
    """Progress (with elapsed and remaining time), the epoch table and the live loss and schedule charts."""

    def __init__(self) -> None:
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="300px", max_width="100%"))
        self.progress_label = W.Label()
        self.progress_label.add_class("lrw-progress-label")
        self.progress_box = W.HBox([self.progress, self.progress_label], layout=W.Layout(display="none"))
        self.progress_box.add_class("lrw-row")
        self.table_html = W.HTML()
        # the box that scrolls is a widget of its own, kept as the table inside it is redrawn: where the user
        # scrolled it stays (a column-reverse box keeps its scroll at the newest row, unless scrolled up)
        self.table_box = W.Box([self.table_html], layout=W.Layout(max_height=f"{(SHOWN_ROWS + 1) * ROW_PX}px"))
        self.table_box.add_class("lrwidget-epochs")
        self.loss_chart = LossChart(height="260px")
        self.sched_chart = SchedChart(height="220px")
        self.key_html = W.HTML(
            key(("curve", "━", "train loss"), ("valid", "●", "valid loss"), ("lr", "━", "learning rate"))
            + " &nbsp; "
            + key(("mom", "━", "momentum"), ("lr", "╌", "planned"))
        )
        self.key_html.add_class("lrw-key")
        # the charts join the panel when it is first shown: drawn hidden, at zero width, they log SVG errors
        self.charts = W.VBox([self.loss_chart.figure, self.sched_chart.figure, self.key_html])
        self.train_box = W.VBox([self.table_box], layout=W.Layout(display="none"))
        self.rows = 0  # epoch rows in the table
        self.phase = ""  # what runs, before the progress: a sweep's 'sweep rate 2 of 5 · ', a search's probe, a repeat
        self.rates: tuple[float, float] = (1e-4, 1e-2)  # the running fit's slice: its schedule is drawn as it starts

    def begin(self, total: int) -> None:
        """A run of `total` steps begins: the progress from 0."""
        with self.progress.hold_sync():
            self.progress.max, self.progress.value = max(total, 1), 0
        self.progress_box.layout.display = ""

    def open(self, metric_names: list[str], total: int, lrs: Any = (), moms: Any = ()) -> None:
        """A fit of `total` steps begins: the training panel with an empty epoch table and the planned schedule
        (`lrs`, `moms` per step); the charts join it the first time."""
        self.rows = 0
        self.table_html.value = epoch_table(metric_names, [], [])
        self.loss_chart.plan(total)
        self.sched_chart.plan(lrs, moms)
        self.train_box.layout.display = ""
        if self.charts not in self.train_box.children:
            self.train_box.children = (self.charts, self.table_box)

    def update(self, learn: Driven, final: bool, unit: str) -> bool:
        """Redraw from the learner's run and recorder (on the training thread, or after the run); True when the
        epoch table gained a row. `phase` goes before the progress ('sweep rate 2 of 5 · '), `unit` counts steps."""
        phase = self.phase
        run, rec = learn.run, learn.recorder
        k = rec.n_batches
        self.progress.value = min(k, self.progress.max)
        elapsed = run.elapsed
        left = 0.0 if final else elapsed / k * (run.total - k) if k else math.nan
        fit = run.kind == "fit"
        where = (
            f"epoch {min(run.epoch + 1, run.n_epoch)}/{run.n_epoch} · {unit} {k}/{run.total}"
            if fit
            else f"step {k}/{run.total}"
        )
        if learn.accum_steps > 1:
            where += f" · {learn.accum_steps} batches a step"
        end = f" · {run.end_reason}" if final and run.end_reason else ""
        self.progress_label.value = (
            f"{phase}{run.kind} · {where} · {fmt_time(elapsed)} elapsed · {fmt_time(left)} left{end}"
        )
        if not fit:
            return False
        self.loss_chart.update(rec)
        self.sched_chart.update(rec)
        if len(rec.values) == self.rows:
            return False
        self.rows = len(rec.values)
        self.table_html.value = epoch_table(rec.metric_names, rec.values, rec.times)
        return True
