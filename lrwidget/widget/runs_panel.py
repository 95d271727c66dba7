"""The runs panel: every run's losses overlaid in one chart, and a table of runs whose rows put the markers back.

The chart's loss axis fits the runs that did not diverge; a diverged run's line leaves through the top edge, where
an arrow with its number marks it. The table is a grid of cells (each row a box that lends its cells to the grid);
in a panel narrower than style.NARROW_RUNS each run becomes a card of labelled values instead.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

import bqplot as bq
import ipywidgets as W
import numpy as np

from .formats import fmt_lr, fmt_num, fmt_time
from .plotting import Axis, downsample, figure, pad_lines, set_traits
from .runs import Run, outcome
from .style import PALETTE, mix

LEGEND_MAX = 8  # kept for callers: the table's colour swatches and run numbers are the chart's legend
MAX_LINE_POINTS = 400  # per run and line: 20 runs stay a light redraw
TITLE = "runs: loss against epochs"
X_PAD = 0.04  # of the epochs shown, beyond the last epoch: its validation point is not cut in half
OFF_NEAR, OFF_STEP = 0.04, 0.08  # diverged runs' arrows closer than this (of the epochs shown) stack this far down


def color(i: int) -> str:
    """The colour of run `i` (cycling after twenty)."""
    return PALETTE[i % len(PALETTE)]


def y_range(runs: list[Run]) -> tuple[float, float]:
    """A loss axis that shows every run's validation loss and the body of the training losses, not their spikes, of
    the runs that did not diverge (all runs, when every one did)."""
    kept = [r for r in runs if not r.diverged] or runs
    finite = [v for r in kept for row in r.values for v in row[:2] if math.isfinite(v)]
    train = np.array([v for r in kept for v in r.losses if math.isfinite(v)])
    if len(train):
        finite += [float(np.percentile(train, 2)), float(np.percentile(train, 98))]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
    return max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad


class RunsChart:
    """Validation loss per epoch (points and lines) and training loss per batch of every run, x in epochs."""

    def __init__(self) -> None:
        self.sx, self.sy = bq.LinearScale(), bq.LinearScale()
        sc = {"x": self.sx, "y": self.sy}
        self.train = bq.Lines(x=[], y=[], scales=sc, stroke_width=1.2, opacities=[0.85])  # thinner, not faint
        self.valid = bq.Lines(x=[], y=[], scales=sc, stroke_width=2)
        # the epochs' points apart from the lines: bqplot draws a Lines marker at a NaN (the padding) as an error
        self.points = bq.Scatter(x=[], y=[], scales=sc, default_size=40, stroke="white", display_names=False)
        # diverged runs: an arrow at the top edge where the run leaves the axis, with its number
        self.off = bq.Scatter(
            x=[],
            y=[],
            names=[],
            display_names=True,
            scales={"x": self.sx, "y": bq.LinearScale(min=0.0, max=1.0)},
            marker="triangle-up",
            default_size=70,
            stroke="var(--lrw-fg, #333)",
            tooltip=bq.Tooltip(fields=["name"], labels=["diverged"]),
        )
        self.x_axis, self.y_axis = Axis(self.sx, "epochs", whole=True), Axis(self.sy, "loss", side="left", n=4)
        self.figure = figure(
            [self.train, self.valid, self.points, self.off], [self.x_axis.axis, self.y_axis.axis], TITLE, "300px"
        )

    def update(self, runs: list[Run]) -> None:
        """Draw every run, a colour each; the loss axis fits the runs that did not diverge."""
        train, valid = [], []
        for r in runs:
            per = max(r.n_iter, 1)  # a probe's epochs are the data's too: a sweep's probe ends inside its first
            x = (np.asarray(r.batches, dtype=float) + 1) / per
            y = np.asarray(r.losses, dtype=float)[: len(x)]
            train.append(downsample(x[: len(y)], np.where(np.isfinite(y), y, np.nan), MAX_LINE_POINTS))
            v = np.array([row[1] if len(row) > 1 else math.nan for row in r.values], dtype=float)
            ends = np.asarray(r.iters, dtype=float) / per if len(r.iters) == len(v) else np.arange(1, len(v) + 1)
            valid.append((ends, np.where(np.isfinite(v), v, np.nan)))
        colors = [color(i) for i in range(len(runs))] or [PALETTE[0]]
        labels = [f"#{i} {r.label}" for i, r in enumerate(runs)]
        lo, hi = y_range(runs)
        last = max((float(np.nanmax(x)) for x, _ in [*train, *valid] if len(x)), default=1.0)
        ox, oy, names = [], [], []
        for i, r in enumerate(runs):
            if not r.diverged:
                continue
            xs = np.concatenate([train[i][0], valid[i][0]])
            ys = np.concatenate([train[i][1], valid[i][1]])
            above = xs[~(ys <= hi)]  # where it is above the axis (or not a number)
            x = float(above.min()) if len(above) else last
            near = sum(1 for v in ox if abs(v - x) < OFF_NEAR * max(last, 1.0))  # several leave at one place: stacked
            ox.append(x)
            oy.append(0.97 - OFF_STEP * near)
            names.append(f"#{i}")
        with self.figure.hold_sync():
            self.y_axis.show(lo, hi)
            self.x_axis.show(0.0, max(last, 1.0) * (1 + X_PAD))
            tx, ty = pad_lines(train) if runs else (np.empty(0), np.empty(0))
            vx, vy = pad_lines(valid) if runs else (np.empty(0), np.empty(0))
            set_traits(self.train, x=tx, y=ty, colors=colors, opacities=[0.85] * len(colors))
            set_traits(self.valid, x=vx, y=vy, colors=colors, labels=labels)
            # a point above the axis is not drawn (over the title): the diverged run's arrow stands for it
            pts = [(x, y, colors[i]) for i, (xs, ys) in enumerate(valid) for x, y in zip(xs, ys) if y <= hi]
            px, py, pc = zip(*pts) if pts else ((), (), (PALETTE[0],))
            set_traits(self.points, x=np.array(px, dtype=float), y=np.array(py, dtype=float), colors=list(pc))
            off_colors = [colors[int(n[1:])] for n in names] or [PALETTE[0]]
            set_traits(self.off, x=np.array(ox), y=np.array(oy), names=np.array(names, dtype=str), colors=off_colors)


def _cell(text: str, key: str = "", cls: str = "") -> W.HTML:
    """A table cell; in a card (a narrow panel) it shows its column's name, `key`, before the value."""
    k = f"<span class='lrw-k'>{html.escape(key)} </span>" if key else ""
    c = W.HTML(f"<div class='lrw-cell {cls}'>{k}{text}</div>")
    return c


class RunsPanel(W.VBox):
    """The runs chart and the runs table; clicking a row's button calls `on_pick(index)`."""

    def __init__(self, on_pick: Callable[[int], None] | None = None, below: W.Widget | None = None):
        self.on_pick, self.below = on_pick, () if below is None else (below,)
        self.chart = RunsChart()
        self.title = W.HTML()
        self.grid = W.GridBox(layout=W.Layout(max_height="360px", overflow="auto", grid_gap="0px 2px"))
        self.grid.add_class("lrw-runs")
        self.grid.add_class("lrw-runs-table")
        self.rows: list[W.Button] = []
        self._shown: list[Run] = []  # the runs the table's rows were made for, in order
        self._names: list[str] = []  # the metric columns those rows have
        self._head: W.Box | None = None
        self._lines: list[W.Box] = []  # per run: its row, the best mark its last cell
        # the chart and table join the panel with the first run, into a box already shown: a figure drawn hidden (at
        # zero width) logs SVG errors
        super().__init__([self.title], layout=W.Layout(display="none"))  # shown with the first run

    def show(self, runs: list[Run], best: int | None = None, ranked_as: str = "") -> None:
        """Redraw chart and table for `runs`, marking run `best` (the best of `ranked_as`, 'the 1-epoch runs from
        start 1'); only new runs' rows are made."""
        self.chart.update(runs)
        names = list(dict.fromkeys(n for r in runs for n in r.metric_names[3:-1]))
        if any(r.search for r in runs):  # a column saying which search and probe each probe was
            names = ["search", *names]
        n_old = len(self._shown)
        changed = len(runs) < n_old or any(a is not b for a, b in zip(runs, self._shown))
        if names != self._names or changed or self._head is None:  # other columns or runs: start afresh
            for w in [self._head, *self._lines]:
                if w is not None:
                    for c in w.children:
                        c.close()  # the old rows' widgets would live on in the kernel
                    w.close()
            head = ["", "#", "run", "epochs", *names[:1], "train_loss", "valid_loss", *names[1:], "time", "ended",
                    "began at", ""]  # fmt: skip
            self._head = W.Box([_cell(f"<b>{html.escape(h)}</b>") for h in head])
            self._head.add_class("lrw-run-head")
            self._shown, self._names, self._lines, self.rows, n_old = [], names, [], [], 0
            self.grid.layout.grid_template_columns = f"repeat({len(head)}, auto)"
        for i, r in enumerate(runs[n_old:], n_old):
            self._lines.append(self._row(i, r, names))
            self._shown.append(r)
        for i, row in enumerate(self._lines):
            mark = _mark("★ best" if i == best else "")
            if row.children[-1].value != mark:
                row.children[-1].value = mark
        self.grid.children = [self._head, *self._lines]
        said = f" · best of {ranked_as}: #{best} {runs[best].label}, {_judged(runs[best])}" if best is not None else ""
        self.title.value = f"<b>runs</b> ({len(runs)}){html.escape(said)}" if runs else ""
        self.layout.display = "" if runs else "none"
        self.children = (self.title, self.chart.figure, self.grid, *self.below) if runs else (self.title,)

    def _row(self, i: int, r: Run, names: list[str]) -> W.Box:
        """The table's row for run `i`: its colour and number, its slice as the button that picks it, its figures, its
        mark."""
        b = W.Button(
            description=r.label,
            tooltip=f"put the markers at this run's rates: lr_min={r.lr_min!r}, lr_steep={r.lr_steep!r}",
            layout=W.Layout(width="auto"),
        )
        b.add_class("lrw-run-row")
        b.on_click(lambda _, i=i: self.on_pick and self.on_pick(i))
        self.rows.append(b)
        metrics = r.metrics
        ended = "diverged" if r.diverged and r.end_reason == "completed" else r.end_reason
        probe = names[:1] == ["search"]
        cells = [
            _cell(f"<span class='lrw-swatch' style='background:{color(i)}'></span>"),  # a colour, no text
            _cell(f"#{i}"),
            b,
            _cell(f"{r.planned} steps" if r.search else str(r.epochs), "epochs"),
            *([_cell(html.escape(f"{r.search}: {r.probe}"), "search") if r.search else _cell("")] if probe else []),
            _cell(fmt_num(r.train_loss), "train"),
            _cell(fmt_num(r.valid_loss), "valid"),
            *(_cell(fmt_num(metrics.get(n, math.nan)), n) for n in names[probe:]),
            _cell(f"{r.seconds:.1f} s" if r.seconds < 60 else fmt_time(r.seconds)),
            _cell(html.escape(ended + (" (loaded)" if r.loaded else ""))),
            _cell(html.escape(r.start or "last weights"), "began at"),
            W.HTML(_mark("")),
        ]
        row = W.Box(cells)
        row.add_class("lrw-run")
        return row


def _mark(text: str) -> str:
    return f"<div class='lrw-cell lrw-best'>{text}</div>" if text else "<div class='lrw-cell lrw-cell-empty'></div>"


def _judged(r: Run) -> str:
    """What the run is judged by, and its value."""
    return (
        f"valid_loss {fmt_num(r.valid_loss)}" if math.isfinite(r.valid_loss) else f"train_loss {fmt_num(r.train_loss)}"
    )


def _num(v: float) -> str:
    return fmt_num(v)


def rate_colors(scores: list[float]) -> list[str]:
    """A colour per outcome (lower is better): green for the best, red for the worst, grey for none."""
    finite = [s for s in scores if math.isfinite(s)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    out = []
    for s in scores:
        if not math.isfinite(s):
            out.append(PALETTE[7])  # grey
            continue
        t = 0.0 if hi == lo else (s - lo) / (hi - lo)  # 0 best .. 1 worst
        out.append(mix(t))
    return out


def rate_names(runs: list[Run]) -> list[str]:
    """What the map says of each run's rate: its number, lr_steep and outcome (diverged: said so)."""
    return [
        f"#{i} lr {fmt_lr(r.lr_steep)}: {_num(outcome(r))}{' (diverged)' if r.diverged else ''}"
        for i, r in enumerate(runs)
    ]
