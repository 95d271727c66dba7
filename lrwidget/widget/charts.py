"""bqplot figures as the core's Recorder.plot_* draws them (loss_figure, lr_find_figure, sched_figure, display); the
charts themselves are in find_chart.py (lr_find), train_charts.py (loss, schedule) and runs_panel.py (runs)."""

from __future__ import annotations

from typing import Any

import bqplot as bq
import numpy as np

from .find_chart import LRFindChart, Marker, curve_at
from .plotting import MARGIN, MAX_POINTS, downsample, pad_lines, set_traits
from .style import var
from .train_charts import LossChart, SchedChart

__all__ = [
    "LRFindChart",
    "LossChart",
    "SchedChart",
    "Marker",
    "curve_at",
    "downsample",
    "pad_lines",
    "set_traits",
    "MARGIN",
    "MAX_POINTS",
    "loss_figure",
    "lr_find_figure",
    "sched_figure",
    "display",
]

SCHED_KEYS = ("lr", "mom")


def lr_find_figure(res: Any, skip_end: int = 5, suggestions: Any = None, nms: Any = None) -> bq.Figure:
    """The lr_find curve (smoothed, raw faint; the band of repeats) against lr on a log axis, with its suggestions as
    labelled points."""
    chart = LRFindChart(res, skip_end)
    band = [chart.band] if len(chart.band.x) else []  # lr_find(repeats=k)'s
    chart.figure.marks = [*band, chart.raw, chart.smooth, chart.points]  # no earlier curves, no rates tried
    if suggestions is not None:  # fastai's plot_lr_find(suggestions=lrs, nms=names): these replace the result's
        xs = [float(v) for v in np.atleast_1d(np.asarray(suggestions, dtype=float))]
        names = [str(n) for n in nms] if nms is not None else [f"suggestion {i + 1}" for i in range(len(xs))]
        if len(names) != len(xs):
            raise ValueError(f"nms names {len(names)} suggestions, suggestions holds {len(xs)}: give one name each")
        chart.show_points(names, xs, chart.smooth.x, chart.smooth.y)
    return chart.figure


def loss_figure(
    rec: Any, skip_start: int = 5, with_valid: bool = True, log: bool = False, show_epochs: bool = False
) -> bq.Figure:
    """Smoothed training loss per batch and validation loss per epoch end, as fastai's plot_loss."""
    chart = LossChart(skip_start, with_valid, height="360px", log=log, legend=True)
    chart.update(rec)
    if show_epochs and rec.iters:
        ends = np.asarray(rec.iters, dtype=float) - 1
        sy = bq.LinearScale(min=0.0, max=1.0)  # the lines span the plot whatever the loss axis shows
        lines = bq.Lines(
            x=np.repeat(ends[:, None], 2, axis=1),
            y=np.tile([0.0, 1.0], (len(ends), 1)),
            scales={"x": chart.train.scales["x"], "y": sy},
            colors=[var("earlier")],
            line_style="dashed",
            stroke_width=1,
        )
        chart.figure.marks = [lines, *chart.figure.marks]
    return chart.figure


def sched_figure(rec: Any, keys: Any = None) -> bq.Figure:
    """Learning rate (and momentum) of the last parameter group per batch; `keys` picks them, as fastai's."""
    keys = list(SCHED_KEYS if keys is None else [keys] if isinstance(keys, str) else keys)
    bad = [k for k in keys if k not in SCHED_KEYS]
    if bad or not keys:
        raise ValueError(f"plot_sched's keys are {list(SCHED_KEYS)} (the lr and the momentum), got {keys!r}")
    chart = SchedChart(height="360px", legend=True)
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
