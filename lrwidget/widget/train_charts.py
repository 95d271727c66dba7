"""The training charts: the loss (training per batch, validation per epoch) and the schedule (learning rate and
momentum), drawn live during a fit and by Recorder.plot_loss / plot_sched."""

from __future__ import annotations

from typing import Any

import bqplot as bq
import numpy as np

from .plotting import Axis, data_range, downsample, figure, set_traits
from .style import var


def _positive_range(*arrays: Any) -> tuple[float, float]:
    """The range of the positive finite values, widened by 10% each way on a log axis."""
    y = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    y = y[np.isfinite(y) & (y > 0)]
    return (float(y.min()) / 1.1, float(y.max()) * 1.1) if len(y) else (0.1, 1.0)


class LossChart:
    """Smoothed training loss per batch and validation loss per epoch; the x axis spans the planned batches."""

    def __init__(
        self,
        skip_start: int = 0,
        with_valid: bool = True,
        height: str = "300px",
        log: bool = False,
        legend: bool = False,
        title: str = "loss",
    ):
        self.skip_start, self.with_valid, self.log = skip_start, with_valid, log
        self.total = 0  # batches planned: the x axis spans them while a fit runs
        sx, sy = bq.LinearScale(), bq.LogScale() if log else bq.LinearScale()
        sc = {"x": sx, "y": sy}
        self.train = bq.Lines(
            x=[], y=[], scales=sc, colors=[var("curve")], labels=["train"], display_legend=legend, stroke_width=1.5
        )
        self.valid = bq.Lines(
            x=[],
            y=[],
            scales=sc,
            colors=[var("valid")],
            labels=["valid"],
            display_legend=legend,
            marker="circle",
            marker_size=40,
        )
        self.x_axis, self.y_axis = Axis(sx, "batches", whole=True), Axis(sy, "loss", side="left", n=4)
        self.figure = figure([self.train, self.valid], [self.x_axis.axis, self.y_axis.axis], title, height)

    def plan(self, total: int) -> None:
        """A fit of `total` batches begins: the x axis spans them all."""
        self.total = total
        self.x_axis.show(0, max(total - 1, 1))

    def update(self, rec: Any) -> None:
        """Redraw from a Recorder (reads its losses: call from the training thread, or after the run)."""
        losses = np.asarray(rec.losses, dtype=float)
        it = np.arange(len(losses), dtype=float)
        # an inf would stretch the axis to infinity: drawn as a gap instead
        x, y = downsample(it[self.skip_start :], np.where(np.isfinite(losses), losses, np.nan)[self.skip_start :])
        vx, vy = np.empty(0), np.empty(0)
        if self.with_valid and rec.values:
            v = np.array([row[1] for row in rec.values], dtype=float)
            ok = np.isfinite(v)
            vx, vy = (np.asarray(rec.iters, dtype=float) - 1)[ok], v[ok]
        self.x_axis.show(0, max(self.total, len(losses)) - 1 if len(losses) > 1 or self.total > 1 else 1)
        self.y_axis.show(*(_positive_range(y, vy) if self.log else data_range(y, vy)))
        set_traits(self.train, x=x, y=y)
        set_traits(self.valid, x=vx, y=vy)


class SchedChart:
    """Learning rate (left axis) and momentum (right axis) of the last parameter group per batch: the planned cycle
    faint and dashed, the batches done solid over it."""

    def __init__(self, height: str = "300px", legend: bool = False, title: str = "schedule"):
        sx, sy, sm = bq.LinearScale(), bq.LinearScale(), bq.LinearScale()
        lr_sc, mom_sc = {"x": sx, "y": sy}, {"x": sx, "y": sm}
        self.lr = bq.Lines(x=[], y=[], scales=lr_sc, colors=[var("lr")], labels=["lr"], display_legend=legend)
        self.mom = bq.Lines(x=[], y=[], scales=mom_sc, colors=[var("mom")], labels=["momentum"], display_legend=legend)
        dashed = {"line_style": "dashed", "opacities": [0.6], "stroke_width": 1.5}
        self.lr_plan = bq.Lines(x=[], y=[], scales=lr_sc, colors=[var("lr")], **dashed)
        self.mom_plan = bq.Lines(x=[], y=[], scales=mom_sc, colors=[var("mom")], **dashed)
        self.x_axis = Axis(sx, "batches", whole=True)
        self.lr_axis = Axis(sy, "learning rate", side="left", n=4, color=var("lr"), label_color=var("lr"))
        self.mom_axis = Axis(sm, "momentum", side="right", n=4, color=var("mom"), label_color=var("mom"))
        axes = [self.x_axis.axis, self.lr_axis.axis, self.mom_axis.axis]
        self.figure = figure([self.lr_plan, self.mom_plan, self.lr, self.mom], axes, title, height)
        self.figure.fig_margin = {"top": 40, "bottom": 50, "left": 84, "right": 72}  # both axes' tick labels
        self.planned_lrs, self.planned_moms = np.empty(0), np.empty(0)

    def plan(self, lrs: Any, moms: Any) -> None:
        """The whole planned schedule (per batch), drawn faint: the done part is drawn over it as it runs."""
        self.planned_lrs, self.planned_moms = np.asarray(lrs, dtype=float), np.asarray(moms, dtype=float)
        n = len(self.planned_lrs)
        it = np.arange(n, dtype=float)
        set_traits(self.lr_plan, x=downsample(it, self.planned_lrs)[0], y=downsample(it, self.planned_lrs)[1])
        if len(self.planned_moms) == n:
            set_traits(self.mom_plan, x=downsample(it, self.planned_moms)[0], y=downsample(it, self.planned_moms)[1])
        else:
            set_traits(self.mom_plan, x=np.empty(0), y=np.empty(0))

    def update(self, rec: Any) -> None:
        """Redraw from a Recorder's lrs and moms."""
        n = len(rec.lrs)
        it = np.arange(n, dtype=float)
        lrs = np.asarray(rec.lrs[:n], dtype=float)
        x, y = downsample(it, lrs)
        moms = rec.moms[:n]
        mx, my = np.empty(0), np.empty(0)
        if any(m is not None for m in moms):
            mx, my = downsample(it, np.array([np.nan if m is None else m for m in moms], dtype=float))
        # a plan the run does not follow (a learner with other momenta, another schedule) is not drawn
        if len(self.planned_lrs) and len(lrs) and not np.isclose(lrs[0], self.planned_lrs[0], rtol=1e-6):
            self.plan([], [])
        if len(self.planned_moms) and len(my) and not np.isclose(my[0], self.planned_moms[0], rtol=1e-6):
            self.plan(self.planned_lrs, [])
        self.x_axis.show(0, max(n, len(self.planned_lrs)) - 1 if max(n, len(self.planned_lrs)) > 1 else 1)
        self.lr_axis.show(*data_range(lrs, self.planned_lrs))
        self.mom_axis.show(*data_range(my, self.planned_moms))
        set_traits(self.lr, x=x, y=y)
        set_traits(self.mom, x=mx, y=my)
