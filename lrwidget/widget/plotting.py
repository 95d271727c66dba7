"""What every chart of the widget shares: a figure, traits set in one message, downsampling, padded lines, axes whose
ticks are chosen here (ticks.py) so that they never repeat."""

from __future__ import annotations

from typing import Any

import bqplot as bq
import numpy as np

from .ticks import LINEAR_FORMAT, LOG_FORMAT, label_offset, linear_ticks, log_ticks

MAX_POINTS = 1000
MARGIN = {"top": 40, "bottom": 50, "left": 64, "right": 24}


def figure(marks: list, axes: list, title: str, height: str = "320px", **kwargs: Any) -> bq.Figure:
    """A figure as wide as its box, `height` high, without a legend (the widget says what each line is in text)."""
    return bq.Figure(
        marks=marks,
        axes=axes,
        title=title,
        fig_margin=dict(MARGIN),
        layout={"width": "100%", "height": height, "min_width": "0"},
        **kwargs,
    )


def set_traits(widget: Any, **values: Any) -> None:
    """Set several traits of a widget (a mark, a scale, an axis) in one message to the browser."""
    with widget.hold_sync():
        for k, v in values.items():
            setattr(widget, k, v)


def downsample(x: np.ndarray, y: np.ndarray, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most `n` evenly spaced points of (x, y), always keeping the first and the last."""
    if len(x) <= n:
        return x, y
    idx = np.linspace(0, len(x) - 1, n).round().astype(np.int64)
    return x[idx], y[idx]


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


def data_range(*arrays: Any, pad: float = 0.05) -> tuple[float, float]:
    """The finite values' range of `arrays`, widened by `pad` of it each side (0..1 for none)."""
    parts = [np.asarray(a, dtype=float).ravel() for a in arrays]
    y = np.concatenate(parts) if parts else np.empty(0)
    y = y[np.isfinite(y)]
    if not len(y):
        return 0.0, 1.0
    lo, hi = float(y.min()), float(y.max())
    p = pad * (hi - lo) or pad * abs(hi) or pad
    return lo - p, hi + p


class Axis:
    """A bqplot axis on its own scale whose range and ticks are set here; a new message only when they change."""

    def __init__(self, scale: bq.Scale, label: str, side: str = "bottom", whole: bool = False, n: int = 5, **kw: Any):
        self.scale, self.whole, self.n, self.side = scale, whole, n, side
        self.log = isinstance(scale, bq.LogScale)
        fmt = LOG_FORMAT if self.log else LINEAR_FORMAT  # for good: see ticks.py
        self.axis = bq.Axis(scale=scale, label=label, side=side, tick_format=fmt, **kw)
        self._shown: tuple = ()

    def show(self, lo: float, hi: float) -> None:
        """Show [lo, hi] with ticks that never repeat (whole numbers for a counting axis)."""
        ticks = log_ticks(lo, hi, self.n) if self.log else linear_ticks(lo, hi, self.n, self.whole)
        shown = (lo, hi, tuple(ticks))
        if shown == self._shown:
            return
        self._shown = shown
        set_traits(self.scale, min=float(lo), max=float(hi))
        values: dict[str, Any] = {"tick_values": np.array(ticks, dtype=float)}
        if self.side in ("left", "right"):
            values["label_offset"] = label_offset(ticks)
        set_traits(self.axis, **values)
