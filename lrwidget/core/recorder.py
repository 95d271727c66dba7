"""Per-batch and per-epoch training history, with fastai's debiased loss smoothing."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np
import torch

from .kernel import kernel


class Charts(Protocol):
    """What draws a recorder's figures (lrwidget.widget.charts, wired by lrwidget/__init__.py: the core draws none)."""

    def loss_figure(self, rec: Any, skip_start: int, with_valid: bool, log: bool, show_epochs: bool) -> Any: ...
    def lr_find_figure(self, res: Any, skip_end: int, suggestions: Any, nms: Any) -> Any: ...
    def sched_figure(self, rec: Any, keys: Any) -> Any: ...
    def display(self, fig: Any) -> None: ...


_charts: list[Callable[[], Charts]] = []  # the loader of the charts: called at the first figure


def draw_with(load: Callable[[], Charts]) -> None:
    """Let the recorder's plot_* draw with what `load()` returns (called once, at the first figure)."""
    _charts[:] = [load]


def charts() -> Charts:
    """The charts the recorder draws with."""
    if not _charts:
        raise RuntimeError("no charts to draw with: import lrwidget (its __init__ wires lrwidget.widget.charts)")
    return _charts[0]()


def smooth(
    raw: Iterable[float], beta: float = 0.98, state: tuple[float, int] = (0.0, 0)
) -> tuple[list[float], tuple[float, int]]:
    """Debiased exponential moving average of `raw`, continuing from `state` (avg, count)."""
    avg, count = state
    out = []
    for v in raw:  # plain floats: lr_find smooths one loss a step, where numpy's overhead would dominate
        avg = beta * avg + (1 - beta) * v
        count += 1
        out.append(avg / (1 - beta**count))
    return out, (avg, count)


class Recorder:
    """What a run did: lr, momentum and loss per training batch, and a row of values per epoch."""

    # batch losses stay on the device until read (`losses`, `raw_losses`, `flush()`): no host-device sync per batch

    def __init__(self, beta: float = 0.98):
        self.beta = beta
        self.metric_names: list[str] = ["epoch", "train_loss", "valid_loss", "time"]
        self.lr_find_result: Any = None
        self.reset()

    def reset(self, metric_names: list[str] | None = None) -> None:
        """Forget the last run (fastai resets its recorder at every fit)."""
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self.values: list[list[float]] = []
        self.iters: list[int] = []  # number of batches done at each epoch end
        self.times: list[float] = []  # seconds per epoch
        self._pending: list[torch.Tensor] = []
        self._raw: list[float] = []  # lists, not arrays: lr_find reads the loss back every step
        self._smooth: list[float] = []
        self._arrays: dict[str, np.ndarray] = {}  # the lists as arrays, made when asked for and kept until they grow
        self._state = (0.0, 0)
        if metric_names is not None:
            self.metric_names = metric_names

    def add_batch(self, loss: torch.Tensor, lr: float, mom: float | None) -> None:
        """Record one training batch; `loss` is a detached device tensor, read back later."""
        self._pending.append(loss)
        self.lrs.append(lr)
        self.moms.append(mom)
        if len(self._pending) >= 1024:  # bound device memory; one sync per 1024 batches
            self.flush()

    def add_read(self, raw: list[float], lrs: list[float], moms: list[float | None]) -> None:
        """Record batches whose losses were read back already (another process's, as plain floats)."""
        self.flush()
        sm, self._state = smooth(raw, self.beta, self._state)
        self._raw += raw
        self._smooth += sm
        self.lrs += lrs
        self.moms += moms

    def flush(self) -> None:
        """Read pending losses back from the device in one transfer and smooth them."""
        if not self._pending:
            return
        p, self._pending = self._pending, []
        # a loss of shape (1,) is a number too
        raw = [float(p[0])] if len(p) == 1 else torch.stack(p).float().cpu().reshape(-1).tolist()
        sm, self._state = smooth(raw, self.beta, self._state)
        self._raw += raw
        self._smooth += sm

    def _array(self, name: str) -> np.ndarray:
        self.flush()
        values = getattr(self, name)
        a = self._arrays.get(name)
        if a is None or len(a) != len(values):
            a = self._arrays[name] = np.array(values, dtype=np.float64)
        return a

    @property
    def losses(self) -> np.ndarray:
        """Smoothed training loss per batch (what fastai's recorder keeps)."""
        return self._array("_smooth")

    @property
    def raw_losses(self) -> np.ndarray:
        """Unsmoothed training loss per batch."""
        return self._array("_raw")

    @property
    def smooth_loss(self) -> float:
        """The latest smoothed loss (nan before any batch)."""
        self.flush()
        return float(self._smooth[-1]) if len(self._smooth) else math.nan

    @property
    def n_batches(self) -> int:
        """Training batches recorded so far, read or not."""
        return len(self.lrs)

    def add_epoch(self, values: list[float], seconds: float) -> None:
        """Record an epoch's row: train_loss, valid_loss, metrics."""
        self.values.append(values)
        self.iters.append(self.n_batches)
        self.times.append(seconds)

    def plot_loss(self, skip_start: int = 5, with_valid: bool = True, log: bool = False, show_epochs: bool = False):
        """Training loss per batch with the validation loss per epoch, as a bqplot Figure (fastai's arguments)."""
        return charts().loss_figure(
            self, skip_start=skip_start, with_valid=with_valid, log=log, show_epochs=show_epochs
        )

    def plot_lr_find(self, skip_end: int = 5, return_fig: bool = True, suggestions: Any = None, nms: Any = None):
        """The last lr_find curve with its suggestions as a bqplot Figure, with fastai's plot_lr_find arguments."""
        if self.lr_find_result is None:
            raise RuntimeError("no lr_find result to plot: run learn.lr_find() first")
        fig = charts().lr_find_figure(self.lr_find_result, skip_end=skip_end, suggestions=suggestions, nms=nms)
        if return_fig:
            return fig
        self.show(fig)
        return None

    def plot_sched(self, keys: Any = None):
        """Learning rate and momentum per batch of the last run (`keys` picks 'lr' or 'mom'), as a bqplot Figure."""
        return charts().sched_figure(self, keys=keys)

    def show_lr_find(self) -> None:
        """Show the last lr_find curve in a Jupyter kernel (lr_find's show_plot); nothing elsewhere."""
        if kernel() is not None:
            self.show(self.plot_lr_find())

    @staticmethod
    def show(fig: Any) -> None:
        """Display `fig` in a Jupyter kernel; nothing elsewhere."""
        if kernel() is not None:
            charts().display(fig)
