"""The runs panel: every run's losses overlaid in one chart, and a table of runs whose rows put the markers back."""

from __future__ import annotations

import html
import math
from collections.abc import Callable

import bqplot as bq
import ipywidgets as W
import numpy as np

from .charts import MARGIN, downsample, pad_lines, set_traits
from .formats import fmt_lr, fmt_time
from .runs import Run, best_index, outcome

# d3's category10, then its lighter halves: twenty colours that stay apart
PALETTE = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf "
    "#aec7e8 #ffbb78 #98df8a #ff9896 #c5b0d5 #c49c94 #f7b6d2 #c7c7c7 #dbdb8d #9edae5"
).split()
LEGEND_MAX = 8  # more runs than this: the table's colour swatches are the legend
MAX_LINE_POINTS = 400  # per run and line: 20 runs stay a light redraw
CELL = "padding:1px 8px;font-family:monospace;font-size:12px;white-space:nowrap"


def color(i: int) -> str:
    """The colour of run `i` (cycling after twenty)."""
    return PALETTE[i % len(PALETTE)]


def y_range(runs: list[Run]) -> tuple[float, float]:
    """A loss axis that shows every run's validation loss and the body of the training losses, not their spikes."""
    finite = [v for r in runs for row in r.values for v in row[:2] if math.isfinite(v)]
    train = np.array([v for r in runs for v in r.losses if math.isfinite(v)])
    if len(train):
        finite += [float(np.percentile(train, 2)), float(np.percentile(train, 98))]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
    return max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad


class RunsChart:
    """Validation loss per epoch (with points) and, fainter, training loss per batch, of every run, x in epochs."""

    def __init__(self) -> None:
        self.sx, self.sy = bq.LinearScale(), bq.LinearScale()
        sc = {"x": self.sx, "y": self.sy}
        self.train = bq.Lines(x=[], y=[], scales=sc, stroke_width=1, opacities=[0.3])
        self.valid = bq.Lines(x=[], y=[], scales=sc, stroke_width=2)
        # the epochs' points apart from the lines: bqplot draws a Lines marker at a NaN (the padding) as an error
        self.points = bq.Scatter(x=[], y=[], scales=sc, default_size=30, stroke="white", display_names=False)
        axes = [bq.Axis(scale=self.sx, label="epochs"), bq.Axis(scale=self.sy, label="loss", side="left")]
        self.figure = bq.Figure(
            marks=[self.train, self.valid, self.points],
            axes=axes,
            title="runs: validation loss per epoch, training loss faint",
            fig_margin=dict(MARGIN),
            legend_location="top-right",
            legend_text={"font-size": "11px"},
            layout={"width": "100%", "height": "340px"},
        )

    def update(self, runs: list[Run]) -> None:
        """Draw every run, a colour each, its slice in the legend."""
        train, valid = [], []
        for r in runs:
            per = max(r.n_iter, 1)
            x = (np.asarray(r.batches, dtype=float) + 1) / per
            y = np.asarray(r.losses, dtype=float)[: len(x)]
            train.append(downsample(x[: len(y)], np.where(np.isfinite(y), y, np.nan), MAX_LINE_POINTS))
            v = np.array([row[1] if len(row) > 1 else math.nan for row in r.values], dtype=float)
            ends = np.asarray(r.iters, dtype=float) / per if len(r.iters) == len(v) else np.arange(1, len(v) + 1)
            valid.append((ends, np.where(np.isfinite(v), v, np.nan)))
        colors = [color(i) for i in range(len(runs))] or ["#1f77b4"]
        labels = [f"#{i} {r.label}" for i, r in enumerate(runs)]
        lo, hi = y_range(runs)
        with self.figure.hold_sync():
            set_traits(self.sy, min=lo, max=hi)
            tx, ty = pad_lines(train) if runs else (np.empty(0), np.empty(0))
            vx, vy = pad_lines(valid) if runs else (np.empty(0), np.empty(0))
            set_traits(self.train, x=tx, y=ty, colors=colors, opacities=[0.3] * len(colors))
            set_traits(self.valid, x=vx, y=vy, colors=colors, labels=labels, display_legend=0 < len(runs) <= LEGEND_MAX)
            pts = [(x, y, colors[i]) for i, (xs, ys) in enumerate(valid) for x, y in zip(xs, ys) if math.isfinite(y)]
            px, py, pc = zip(*pts) if pts else ((), (), ("#1f77b4",))
            set_traits(self.points, x=np.array(px, dtype=float), y=np.array(py, dtype=float), colors=list(pc))


def _cell(text: str, style: str = "") -> W.HTML:
    return W.HTML(f"<div style='{CELL};{style}'>{text}</div>")


class RunsPanel(W.VBox):
    """The runs chart and the runs table; clicking a row's button calls `on_pick(index)`."""

    def __init__(self, on_pick: Callable[[int], None] | None = None):
        self.on_pick = on_pick
        self.chart = RunsChart()
        self.title = W.HTML()
        self.grid = W.GridBox(layout=W.Layout(max_height="330px", overflow="auto", grid_gap="0px 2px"))
        self.grid.add_class("lrw-runs")
        self.rows: list[W.Button] = []
        self._shown: list[Run] = []  # the runs the table's rows were made for, in order
        self._names: list[str] = []  # the metric columns those rows have
        self._head: list[W.Widget] = []
        self._cells: list[list[W.Widget]] = []  # per run: its row's widgets, the best mark last
        # the chart and table join the panel with the first run, into a box already shown: a figure drawn hidden (at
        # zero width) logs SVG errors
        super().__init__([self.title])

    def show(self, runs: list[Run]) -> None:
        """Redraw chart and table for `runs` (they show from the first run on); only new runs' rows are made."""
        self.chart.update(runs)
        best = best_index(runs)
        names = list(dict.fromkeys(n for r in runs for n in r.metric_names[3:-1]))
        n_old = len(self._shown)
        changed = len(runs) < n_old or any(a is not b for a, b in zip(runs, self._shown))
        if names != self._names or changed:  # other columns, or other runs: start afresh
            for w in [*self._head, *(c for row in self._cells for c in row)]:
                w.close()  # the old rows' widgets would live on in the kernel
            head = ["", "run", "epochs", "train_loss", "valid_loss", *names, "time", "ended", "start", ""]
            self._head = [_cell(f"<b>{html.escape(h)}</b>") for h in head]
            self._shown, self._names, self._cells, self.rows, n_old = [], names, [], [], 0
            self.grid.layout.grid_template_columns = f"repeat({len(head)}, auto)"
        for i, r in enumerate(runs[n_old:], n_old):
            self._cells.append(self._row(i, r, names))
            self._shown.append(r)
        for i, row in enumerate(self._cells):
            mark = "★ best" if i == best else ""
            if row[-1].value != _mark(mark):
                row[-1].value = _mark(mark)
        self.grid.children = [*self._head, *(c for row in self._cells for c in row)]
        said = (
            f" · best: #{best} {runs[best].label}, valid_loss {_num(outcome(runs[best]))}" if best is not None else ""
        )
        self.title.value = f"<b>runs</b> ({len(runs)}){html.escape(said)}" if runs else ""
        self.children = (self.title, self.chart.figure, self.grid) if runs else (self.title,)

    def _row(self, i: int, r: Run, names: list[str]) -> list[W.Widget]:
        """The table's row for run `i`: its colour, its slice as the button that picks it, its figures, its mark."""
        b = W.Button(
            description=r.label,
            tooltip=f"put the markers at this run's rates: lr_min={r.lr_min!r}, lr_steep={r.lr_steep!r}",
            layout=W.Layout(width="auto", height="24px"),
        )
        b.add_class("lrw-run-row")
        b.on_click(lambda _, i=i: self.on_pick and self.on_pick(i))
        self.rows.append(b)
        metrics = r.metrics
        return [
            _cell("&#9632;", f"color:{color(i)};font-size:16px"),
            b,
            _cell(str(r.epochs)),
            _cell(_num(r.train_loss)),
            _cell(_num(r.valid_loss)),
            *(_cell(_num(metrics.get(n, math.nan))) for n in names),
            _cell(f"{r.seconds:.1f} s" if r.seconds < 60 else fmt_time(r.seconds)),
            _cell(html.escape(r.end_reason + (" (loaded)" if r.loaded else ""))),
            _cell("same" if r.from_start else "went on"),
            W.HTML(_mark("")),
        ]


def _mark(text: str) -> str:
    return f"<div style='{CELL};color:#1a9850;font-weight:bold'>{text}</div>"


def _num(v: float) -> str:
    return f"{v:.4f}" if math.isfinite(v) else "—"


def rate_colors(scores: list[float]) -> list[str]:
    """A colour per outcome (lower is better): green for the best, crimson for the worst, grey for none."""
    finite = [s for s in scores if math.isfinite(s)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    out = []
    for s in scores:
        if not math.isfinite(s):
            out.append("#7f7f7f")
            continue
        t = 0.0 if hi == lo else (s - lo) / (hi - lo)  # 0 best .. 1 worst
        out.append(_mix(t))
    return out


def _mix(t: float) -> str:
    """Green (t=0) through amber to red (t=1): not the markers' orange and red."""
    stops = [(0x1A, 0x98, 0x50), (0xE6, 0xC2, 0x29), (0x8E, 0x01, 0x52)]
    a, f = (0, t * 2) if t <= 0.5 else (1, t * 2 - 1)
    c = [round(x + (y - x) * f) for x, y in zip(stops[a], stops[a + 1])]
    return "#{:02x}{:02x}{:02x}".format(*c)


def rate_names(runs: list[Run]) -> list[str]:
    """What the map says of each run's rate: its lr_steep and outcome."""
    return [f"#{i} lr {fmt_lr(r.lr_steep)}: {_num(outcome(r))}" for i, r in enumerate(runs)]
