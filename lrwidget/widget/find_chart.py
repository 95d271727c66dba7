"""The lr_find chart: loss against learning rate on a log axis, the suggestions, the draggable markers, earlier curves,
the band of repeated range tests and the map of rates tried."""

from __future__ import annotations

import math
from typing import Any

import bqplot as bq
import numpy as np

from .formats import fmt_lr
from .plotting import Axis, data_range, downsample, figure, pad_lines, set_traits
from .style import var

RATES_Y = 0.2  # the height of the map of rates tried, in the plot's 0..1 (the marker handles are below it)
RATES_STEP = 0.07  # runs at the same rate are stacked this far apart
TITLE = "lr_find: loss against learning rate"
BAND_OPACITY = 0.25  # the band of the repeats, behind the median curve: a tint of the curve's colour


def curve_at(lrs: np.ndarray, losses: np.ndarray, lr: float) -> float:
    """The curve's loss at `lr`, interpolated in log(lr)."""
    ok = np.isfinite(losses)
    if not ok.any():
        return math.nan
    return float(np.interp(math.log(lr), np.log(lrs[ok]), losses[ok]))


def suggestion_color(key: str) -> str:
    """The colour of a suggestion's point (lr_min, lr_steep, valley, slide; others grey), per theme."""
    return var(key) if key in ("lr_min", "lr_steep", "valley", "slide") else var("point")


class Marker:
    """A draggable vertical marker: a one-point Scatter moved along x, a vertical line and a value label.

    The label lies on the side of its line toward the middle of the chart, so that it is never cut off at either end
    (a label is shorter than half the plot even in a 450 px output); two markers' labels are at different heights. A
    value beyond the axis is drawn at the axis' end, its label saying so with an arrow ('lr_steep 100 →').
    """

    def __init__(self, name: str, sx: bq.Scale, color: str, row: int):
        self.name, self.sx = name, sx
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
            align="start",
            x_offset=5,
            default_size=13,
            font_weight="bold",
        )
        # no tooltip: one would show the value where a drag began, over the other handle; the label shows the value
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
        )

    @property
    def marks(self) -> list[bq.Mark]:
        """Line, label and handle, the handle last so that it is on top."""
        return [self.line, self.label, self.handle]

    def move(self, value: float) -> None:
        """Draw the marker at `value` (at the axis' end when beyond it)."""
        set_traits(self.handle, x=np.array([self.clamp(value)]))
        self.draw_at(value)

    def clamp(self, value: float) -> float:
        lo, hi = float(self.sx.min), float(self.sx.max)
        return min(max(value, lo), hi)

    def draw_at(self, value: float) -> None:
        """Move the line and label only (while the handle is being dragged)."""
        lo, hi = float(self.sx.min), float(self.sx.max)
        x = self.clamp(value)
        text = f"{self.name} {fmt_lr(value)}"
        if value > hi:
            text, left = f"{text} →", True  # beyond the right end: the arrow points off the chart
        elif value < lo:
            text, left = f"← {text}", False
        else:
            left = 0 < lo < hi and math.log(x / lo) / math.log(hi / lo) > 0.5
        side = {"align": "end", "x_offset": -5} if left else {"align": "start", "x_offset": 5}
        with self.line.hold_sync(), self.label.hold_sync():
            self.line.x = np.array([x, x])
            set_traits(self.label, x=np.array([x]), text=np.array([text]), **side)


class LRFindChart:
    """Smoothed (and faint raw) loss against lr on a log axis, suggestions as labelled points, optional markers."""

    def __init__(self, res: Any = None, skip_end: int = 5, lr_range: tuple[float, float] = (1e-7, 10.0)):
        self.sx = bq.LogScale(min=lr_range[0], max=lr_range[1])
        self.sy = bq.LinearScale(min=0.0, max=1.0)
        sc = {"x": self.sx, "y": self.sy}
        self.raw = bq.Lines(x=[], y=[], scales=sc, colors=[var("raw")], stroke_width=1)
        # lr_find(repeats=k): the lowest and highest smoothed loss of the repeats, filled between, behind the median
        self.band = bq.Lines(
            x=[],
            y=[],
            scales=sc,
            colors=[var("curve")],
            fill="between",
            fill_colors=[var("curve")],
            fill_opacities=[BAND_OPACITY],
            opacities=[0.0, 0.0],
            stroke_width=0,
        )
        self.smooth = bq.Lines(
            x=[],
            y=[],
            scales=sc,
            colors=[var("curve")],
            stroke_width=2.5,
            tooltip=bq.Tooltip(fields=["x", "y"], formats=[".3e", ".4f"], labels=["lr", "loss"]),
        )
        self.points = bq.Scatter(
            x=[],
            y=[],
            names=[],
            display_names=True,
            scales=sc,
            colors=[var("point")],
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
            x=[], y=[], scales=sc, colors=[var("earlier")], opacities=[0.8], stroke_width=1.5, line_style="dashed"
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
            stroke="var(--lrw-fg, #333)",
            tooltip=bq.Tooltip(fields=["name"], labels=["rate tried"]),
        )
        self.x_axis = Axis(self.sx, "learning rate (log scale)", n=9)
        self.y_axis = Axis(self.sy, "loss", side="left")
        self.x_axis.show(*lr_range)
        self.y_axis.show(0.0, 1.0)
        self.figure = figure(
            [self.earlier, self.band, self.raw, self.smooth, self.points, self.rates],
            [self.x_axis.axis, self.y_axis.axis],
            TITLE,
        )
        if res is not None:
            self.show_result(res, skip_end)

    @property
    def lr_range(self) -> tuple[float, float]:
        """The lr range the x axis shows."""
        return float(self.sx.min), float(self.sx.max)

    def add_marker(self, name: str, color: str) -> Marker:
        """A draggable marker on this chart's lr axis, its label a row below the last marker's."""
        m = Marker(name, self.sx, color, row=len(self.markers))
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
        if lr_range is not None:
            self.x_axis.show(float(lr_range[0]), float(lr_range[1]))
        self.y_axis.show(*data_range(losses))
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
        self.show_band(lrs, *(res.band if res.band is not None else ((), ())))
        keys = [k for k, v in res.suggestions.items() if v is not None]
        self.show_points(keys, [float(res.suggestions[k]) for k in keys], lrs, losses)

    def show_band(self, lrs: Any, lo: Any, hi: Any) -> None:
        """Fill between the repeats' lowest (`lo`) and highest (`hi`) loss at each lr, up to the first lr where either
        is not finite; nothing for empty arrays. The y axis takes in the band, up to the curve's highest loss (a repeat
        that diverged early would squash the curve)."""
        lrs, lo, hi = (np.asarray(a, dtype=float) for a in (lrs, lo, hi))
        n = min(len(lrs), len(lo), len(hi))
        bad = np.flatnonzero(~(np.isfinite(lo[:n]) & np.isfinite(hi[:n])))
        n = int(bad[0]) if len(bad) else n
        if n < 2:
            set_traits(self.band, x=np.empty(0), y=np.empty(0))
            return
        x, lo_ = downsample(lrs[:n], lo[:n])
        _, hi_ = downsample(lrs[:n], hi[:n])
        top = np.nanmax(np.asarray(self.smooth.y, dtype=float), initial=-np.inf)
        self.y_axis.show(*data_range(self.smooth.y, lo_, np.minimum(hi_, top) if np.isfinite(top) else hi_))
        set_traits(self.band, x=np.vstack([x, x]), y=np.vstack([lo_, hi_]))

    def show_earlier(self, curves: list[tuple[Any, Any]]) -> None:
        """Draw earlier (lrs, smoothed losses) curves faintly behind the current one."""
        rows = [downsample(np.asarray(x, dtype=float), np.asarray(y, dtype=float)) for x, y in curves]
        x, y = pad_lines(rows) if rows else (np.empty(0), np.empty(0))
        n = max(len(rows), 1)
        set_traits(self.earlier, x=x, y=y, colors=[var("earlier")] * n, opacities=[0.8] * n)

    def show_rates(self, xs: list[float], colors: list[str], names: list[str]) -> None:
        """Mark the rates tried at lrs `xs` (clamped into the axis), each in its colour, `names` in the tooltip; runs
        at the same rate (within 2%) are stacked, not drawn over each other."""
        lo, hi = self.lr_range
        x = np.clip(np.array(xs, dtype=float), lo, hi)
        y, seen = [], []
        for v in x:
            k = sum(1 for s in seen if abs(math.log(v / s)) < 0.02)
            seen.append(v)
            y.append(RATES_Y + RATES_STEP * k)
        set_traits(
            self.rates, x=x, y=np.array(y, dtype=float), names=np.array(names, dtype=str), colors=colors or ["#555"]
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
            colors=[suggestion_color(k) for k in keys] or [var("point")],
        )
