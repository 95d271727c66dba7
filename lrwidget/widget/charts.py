"""bqplot figures: the lr_find curve (with draggable markers), the training loss and the schedule."""

from __future__ import annotations

import math
from typing import Any

import bqplot as bq
import numpy as np

from .formats import fmt_lr

MAX_POINTS = 1000
SUGGESTION_COLORS = {"lr_min": "#ff7f0e", "lr_steep": "#d62728", "valley": "#2ca02c", "slide": "#9467bd"}
MARGIN = {"top": 40, "bottom": 50, "left": 60, "right": 30}
RATES_Y = 0.2  # the height of the map of rates tried, in the plot's 0..1 (the marker handles are below it)


def downsample(x: np.ndarray, y: np.ndarray, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most `n` evenly spaced points of (x, y), always keeping the first and the last."""
    if len(x) <= n:
        return x, y
    idx = np.linspace(0, len(x) - 1, n).round().astype(np.int64)
    return x[idx], y[idx]


def _figure(marks: list, axes: list, title: str, height: str = "360px") -> bq.Figure:
    return bq.Figure(
        marks=marks, axes=axes, title=title, fig_margin=dict(MARGIN), layout={"width": "100%", "height": height}
    )


def set_traits(mark: Any, **values: Any) -> None:
    """Set several traits of a widget (a mark, a scale) in one message to the browser."""
    with mark.hold_sync():
        for k, v in values.items():
            setattr(mark, k, v)


def pad_lines(rows: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Lines of different lengths as two 2-d arrays, each padded with its own last point (adding nothing drawn)."""
    # not NaN: bqplot logs an SVG error for a line that ends in NaN; at least two columns: bqplot squeezes its
    # arrays, and a 1x1 one would become a 0-d array it refuses. A line with no point is one at (1, 0), of length 0
    n = max(2, *(len(x) for x, _ in rows))
    xs, ys = np.ones((len(rows), n)), np.zeros((len(rows), n))
    for i, (x, y) in enumerate(rows):
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(x):
            xs[i], ys[i] = np.pad(x, (0, n - len(x)), mode="edge"), np.pad(y, (0, n - len(y)), mode="edge")
    return xs, ys


def _y_range(y: np.ndarray) -> tuple[float, float]:
    y = y[np.isfinite(y)]
    if not len(y):
        return 0.0, 1.0
    lo, hi = float(y.min()), float(y.max())
    pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
    return lo - pad, hi + pad


def curve_at(lrs: np.ndarray, losses: np.ndarray, lr: float) -> float:
    """The curve's loss at `lr`, interpolated in log(lr)."""
    ok = np.isfinite(losses)
    if not ok.any():
        return math.nan
    return float(np.interp(math.log(lr), np.log(lrs[ok]), losses[ok]))


class Marker:
    """A draggable vertical marker: a one-point Scatter moved along x, a vertical line and a value label.

    The label is drawn on the line's `side` ("left" or "right"), so that the labels of two markers, the lower one's
    on the left and the higher one's on the right, never meet however close the markers are; a left label flips to
    the right near the axis' left end, where it would be cut off.
    """

    FLIP_AT = 0.15  # a left label flips right within this fraction of the (log) axis from its left end

    def __init__(self, name: str, sx: bq.Scale, color: str, row: int, side: str = "right"):
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        self.name, self.side, self.sx = name, side, sx
        sy = bq.LinearScale(min=0.0, max=1.0)
        self.y_handle, self.y_label = 0.04 + 0.07 * row, 0.95 - 0.08 * row
        sc = {"x": sx, "y": sy}
        self.line = bq.Lines(
            x=[1.0, 1.0], y=[0.0, 1.0], scales=sc, colors=[color], line_style="dashed", stroke_width=1.5
        )
        self.label = bq.Label(
            x=[1.0],
            y=[self.y_label],
            text=[name],
            scales=sc,
            colors=[color],
            **self._label_side(1.0),
            default_size=13,
            font_weight="bold",
        )
        self.handle = bq.Scatter(
            x=[1.0],
            y=[self.y_handle],
            scales=sc,
            colors=[color],
            marker="diamond",
            default_size=180,
            stroke="white",
            enable_move=True,
            restrict_x=True,
            tooltip=bq.Tooltip(fields=["x"], formats=[".4g"], labels=[name]),
        )

    @property
    def marks(self) -> list[bq.Mark]:
        """Line, label and handle, the handle last so that it is on top."""
        return [self.line, self.label, self.handle]

    def move(self, x: float, value: float) -> None:
        """Draw the marker at `x`, its label showing `value`."""
        set_traits(self.handle, x=np.array([x]))
        self.draw_at(x, value)

    def _label_side(self, x: float) -> dict[str, Any]:
        """The label's alignment and offset at lr `x`: on the marker's side, but right near the axis' left end."""
        lo, hi = float(self.sx.min or 0), float(self.sx.max or 0)
        left = self.side == "left"
        if left and 0 < lo < hi and x > 0:
            left = math.log(x / lo) / math.log(hi / lo) >= self.FLIP_AT
        return {"align": "end", "x_offset": -5} if left else {"align": "start", "x_offset": 5}

    def draw_at(self, x: float, value: float) -> None:
        """Move the line and label only (while the handle is being dragged)."""
        set_traits(self.line, x=np.array([x, x]))
        text = np.array([f"{self.name} {fmt_lr(value)}"])
        set_traits(self.label, x=np.array([x]), text=text, **self._label_side(x))


class LRFindChart:
    """Smoothed (and faint raw) loss against lr on a log axis, suggestions as labelled points, optional markers."""

    def __init__(self, res: Any = None, skip_end: int = 5, lr_range: tuple[float, float] = (1e-7, 10.0)):
        self.sx = bq.LogScale(min=lr_range[0], max=lr_range[1])
        self.sy = bq.LinearScale(min=0.0, max=1.0)
        sc = {"x": self.sx, "y": self.sy}
        self.raw = bq.Lines(
            x=[], y=[], scales=sc, colors=["#1f77b4"], opacities=[0.25], stroke_width=1, labels=["raw loss"]
        )
        self.smooth = bq.Lines(
            x=[],
            y=[],
            scales=sc,
            colors=["#1f77b4"],
            stroke_width=2.5,
            labels=["smoothed loss"],
            tooltip=bq.Tooltip(fields=["x", "y"], formats=[".3e", ".4f"], labels=["lr", "loss"]),
        )
        self.points = bq.Scatter(
            x=[],
            y=[],
            names=[],
            display_names=True,
            scales=sc,
            colors=["#555"],
            default_size=70,
            stroke="white",
            tooltip=bq.Tooltip(
                fields=["name", "x", "y"], formats=["", ".4g", ".4f"], labels=["suggestion", "lr", "loss"]
            ),
        )
        self.point_keys: list[str] = []
        self.markers: dict[str, Marker] = {}
        # the widget's earlier lr_find curves (another batch size, before unfreeze()), faint, for comparison
        self.earlier = bq.Lines(
            x=[], y=[], scales=sc, colors=["#7f7f7f"], opacities=[0.45], stroke_width=1.5, line_style="dashed"
        )
        # the map of rates tried: each run's lr_steep in a strip above the marker handles, coloured by outcome
        self.rates = bq.Scatter(
            x=[],
            y=[],
            names=[],
            display_names=False,
            scales={"x": self.sx, "y": bq.LinearScale(min=0.0, max=1.0)},
            marker="triangle-up",
            default_size=90,
            stroke="#333",
            tooltip=bq.Tooltip(fields=["name"], labels=["rate tried"]),
        )
        axes = [
            bq.Axis(scale=self.sx, label="learning rate (log scale)", tick_format=".0e"),
            bq.Axis(scale=self.sy, label="loss", side="left", tick_format=".3g"),
        ]
        self.figure = _figure(
            [self.earlier, self.raw, self.smooth, self.points, self.rates],
            axes,
            "lr_find: smoothed loss (raw loss faint) against learning rate",
        )
        if res is not None:
            self.show_result(res, skip_end)

    @property
    def lr_range(self) -> tuple[float, float]:
        """The lr range the x axis shows."""
        return float(self.sx.min), float(self.sx.max)

    def add_marker(self, name: str, color: str, side: str = "right") -> Marker:
        """A draggable marker on this chart's lr axis, its label on the line's `side` ("left" or "right")."""
        m = Marker(name, self.sx, color, row=len(self.markers), side=side)
        self.markers[name] = m
        self.figure.marks = [*self.figure.marks, *m.marks]
        return m

    def show_curve(
        self,
        lrs: np.ndarray,
        losses: np.ndarray,
        raw: np.ndarray | None = None,
        lr_range: tuple[float, float] | None = None,
    ) -> None:
        """Draw a (possibly partial) curve; the y axis fits the smoothed loss."""
        lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
        n = min(len(lrs), len(losses))
        lrs, losses = lrs[:n], losses[:n]
        raw = np.asarray(raw if raw is not None else [], dtype=float)[:n]
        lo, hi = _y_range(losses)
        if lr_range is not None:
            set_traits(self.sx, min=float(lr_range[0]), max=float(lr_range[1]))
        set_traits(self.sy, min=lo, max=hi)
        xs, ys = downsample(lrs, losses)
        set_traits(self.smooth, x=xs, y=ys)
        xr, yr = downsample(lrs[: len(raw)], raw)
        set_traits(self.raw, x=xr, y=yr)

    def show_result(self, res: Any, skip_end: int = 5, lr_range: tuple[float, float] | None = None) -> None:
        """Draw an LRFindResult: its curve without the last `skip_end` steps, and its suggestions."""
        lrs, losses = np.asarray(res.lrs, dtype=float), np.asarray(res.losses, dtype=float)
        n = max(len(lrs) - skip_end, min(len(lrs), 2)) if skip_end else len(lrs)
        lrs, losses, raw = lrs[:n], losses[:n], np.asarray(res.raw_losses, dtype=float)[:n]
        if lr_range is None and len(lrs) >= 2:  # a range given is the one asked for, by a run stopped early
            lr_range = (float(lrs[0]), float(lrs[-1]))
        self.show_curve(lrs, losses, raw, lr_range)
        keys = [k for k, v in res.suggestions.items() if v is not None]
        self.show_points(keys, [float(res.suggestions[k]) for k in keys], lrs, losses)

    def show_earlier(self, curves: list[tuple[Any, Any]]) -> None:
        """Draw earlier (lrs, smoothed losses) curves faintly behind the current one."""
        rows = [downsample(np.asarray(x, dtype=float), np.asarray(y, dtype=float)) for x, y in curves]
        x, y = pad_lines(rows) if rows else (np.empty(0), np.empty(0))
        set_traits(self.earlier, x=x, y=y, colors=["#7f7f7f"] * max(len(rows), 1), opacities=[0.45] * max(len(rows), 1))

    def show_rates(self, xs: list[float], colors: list[str], names: list[str]) -> None:
        """Mark the rates tried at lrs `xs` (clamped into the axis), each in its colour, `names` in the tooltip."""
        lo, hi = self.lr_range
        x = np.clip(np.array(xs, dtype=float), lo, hi)
        set_traits(
            self.rates, x=x, y=np.full(len(x), RATES_Y), names=np.array(names, dtype=str), colors=colors or ["#555"]
        )

    def show_points(self, keys: list[str], xs: list[float], lrs: np.ndarray, losses: np.ndarray) -> None:
        """Mark suggestions `keys` at lrs `xs`, each on the curve (lrs, losses) and labelled with its value."""
        ys = [curve_at(lrs, losses, x) if len(lrs) else math.nan for x in xs]
        self.point_keys = keys
        set_traits(
            self.points,
            x=np.array(xs, dtype=float),
            y=np.array(ys, dtype=float),
            names=np.array([f"{k} {fmt_lr(x)}" for k, x in zip(keys, xs)], dtype=str),
            colors=[SUGGESTION_COLORS.get(k, "#555") for k in keys] or ["#555"],
        )


def lr_find_figure(res: Any, skip_end: int = 5, suggestions: Any = None, nms: Any = None) -> bq.Figure:
    """The lr_find curve (smoothed, raw faint) against lr on a log axis, with its suggestions as labelled points."""
    chart = LRFindChart(res, skip_end)
    chart.figure.marks = [chart.raw, chart.smooth, chart.points]  # no earlier curves, no rates tried: the widget's
    if suggestions is not None:  # fastai's plot_lr_find(suggestions=lrs, nms=names): these replace the result's
        xs = [float(v) for v in np.atleast_1d(np.asarray(suggestions, dtype=float))]
        names = [str(n) for n in nms] if nms is not None else [f"suggestion {i + 1}" for i in range(len(xs))]
        if len(names) != len(xs):
            raise ValueError(f"nms names {len(names)} suggestions, suggestions holds {len(xs)}: give one name each")
        chart.show_points(names, xs, chart.smooth.x, chart.smooth.y)
    return chart.figure


class LossChart:
    """Smoothed training loss per batch and validation loss per epoch."""

    def __init__(self, skip_start: int = 0, with_valid: bool = True, height: str = "300px", log: bool = False):
        self.skip_start, self.with_valid = skip_start, with_valid
        sx, sy = bq.LinearScale(), bq.LogScale() if log else bq.LinearScale()
        sc = {"x": sx, "y": sy}
        self.train = bq.Lines(x=[], y=[], scales=sc, colors=["#1f77b4"], labels=["train"], display_legend=True)
        self.valid = bq.Lines(
            x=[],
            y=[],
            scales=sc,
            colors=["#ff7f0e"],
            labels=["valid"],
            display_legend=True,
            marker="circle",
            marker_size=40,
        )
        axes = [bq.Axis(scale=sx, label="batches"), bq.Axis(scale=sy, label="loss", side="left")]
        self.figure = _figure([self.train, self.valid], axes, "loss", height)

    def update(self, rec: Any) -> None:
        """Redraw from a Recorder (reads its losses: call from the training thread, or after the run)."""
        losses = np.asarray(rec.losses, dtype=float)
        it = np.arange(len(losses), dtype=float)
        # an inf would stretch the auto-scaled axis to infinity (d3 skips NaN only): drawn as a gap instead
        x, y = downsample(it[self.skip_start :], np.where(np.isfinite(losses), losses, np.nan)[self.skip_start :])
        vx, vy = np.empty(0), np.empty(0)
        if self.with_valid and rec.values:
            v = np.array([row[1] for row in rec.values], dtype=float)
            ok = np.isfinite(v)
            vx, vy = (np.asarray(rec.iters, dtype=float) - 1)[ok], v[ok]
        set_traits(self.train, x=x, y=y)
        set_traits(self.valid, x=vx, y=vy)


def loss_figure(
    rec: Any, skip_start: int = 5, with_valid: bool = True, log: bool = False, show_epochs: bool = False
) -> bq.Figure:
    """Smoothed training loss per batch and validation loss per epoch end, as fastai's plot_loss."""
    chart = LossChart(skip_start, with_valid, height="360px", log=log)
    chart.update(rec)
    if show_epochs and rec.iters:
        ends = np.asarray(rec.iters, dtype=float) - 1
        sy = bq.LinearScale(min=0.0, max=1.0)  # the lines span the plot whatever the loss axis shows
        lines = bq.Lines(
            x=np.repeat(ends[:, None], 2, axis=1),
            y=np.tile([0.0, 1.0], (len(ends), 1)),
            scales={"x": chart.train.scales["x"], "y": sy},
            colors=["#bbbbbb"],
            line_style="dashed",
            stroke_width=1,
        )
        chart.figure.marks = [lines, *chart.figure.marks]
    return chart.figure


class SchedChart:
    """Learning rate (left axis) and momentum (right axis) of the last parameter group per batch."""

    def __init__(self, height: str = "300px"):
        sx, sy, sm = bq.LinearScale(), bq.LinearScale(), bq.LinearScale()
        self.lr = bq.Lines(
            x=[], y=[], scales={"x": sx, "y": sy}, colors=["#2ca02c"], labels=["lr"], display_legend=True
        )
        self.mom = bq.Lines(
            x=[], y=[], scales={"x": sx, "y": sm}, colors=["#9467bd"], labels=["momentum"], display_legend=True
        )
        axes = [
            bq.Axis(scale=sx, label="batches"),
            bq.Axis(scale=sy, label="learning rate", side="left", tick_format=".1e", label_offset="55px"),
            bq.Axis(scale=sm, label="momentum", side="right", tick_format=".2f", label_offset="45px"),
        ]
        self.figure = _figure([self.lr, self.mom], axes, "schedule", height)
        self.figure.fig_margin = {**MARGIN, "left": 75, "right": 60}  # room for both axes' tick labels

    def update(self, rec: Any) -> None:
        """Redraw from a Recorder's lrs and moms."""
        n = len(rec.lrs)
        it = np.arange(n, dtype=float)
        x, y = downsample(it, np.asarray(rec.lrs[:n], dtype=float))
        moms = rec.moms[:n]
        mx, my = np.empty(0), np.empty(0)
        if any(m is not None for m in moms):
            mx, my = downsample(it, np.array([np.nan if m is None else m for m in moms], dtype=float))
        set_traits(self.lr, x=x, y=y)
        set_traits(self.mom, x=mx, y=my)


SCHED_KEYS = ("lr", "mom")


def sched_figure(rec: Any, keys: Any = None) -> bq.Figure:
    """Learning rate (and momentum) of the last parameter group per batch; `keys` picks them, as fastai's."""
    keys = list(SCHED_KEYS if keys is None else [keys] if isinstance(keys, str) else keys)
    bad = [k for k in keys if k not in SCHED_KEYS]
    if bad or not keys:
        raise ValueError(f"plot_sched's keys are {list(SCHED_KEYS)} (the lr and the momentum), got {keys!r}")
    chart = SchedChart(height="360px")
    chart.update(rec)
    shown = [m for k, m in (("lr", chart.lr), ("mom", chart.mom)) if k in keys]
    chart.figure.marks = shown
    chart.figure.axes = [
        a for a in chart.figure.axes if a.scale is chart.lr.scales["x"] or any(a.scale is m.scales["y"] for m in shown)
    ]
    return chart.figure


def display(fig: Any) -> None:
    """Show `fig` in the running notebook."""
    from IPython.display import display as show

    show(fig)
