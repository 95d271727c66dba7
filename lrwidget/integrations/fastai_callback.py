"""The fastai callback through which a fastai Learner's runs reach lrwidget: each training batch's lr, momentum and
loss into an lrwidget Recorder, each epoch's row, the observers told, a Stop asked for ends the run at the next batch.
Defined on first use: importing this module does not import fastai."""

from __future__ import annotations

import math
import time
from typing import Any

from ..core.events import RunInfo, emit
from ..core.guard import StopSignal


def as_float(v: Any) -> float:
    """A number from fastai (python, numpy or 0-d tensor, or None) as a Python float; None -> nan."""
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


_callback_cls: type | None = None


def callback_class() -> type:
    """The fastai Callback class, defined on first use (fastai is imported by then)."""
    global _callback_cls
    if _callback_cls is not None:
        return _callback_cls
    from fastai.callback.core import Callback, CancelFitException

    class LRWidgetCallback(Callback):
        """Feeds an lrwidget Recorder and the widget's observers from fastai's training loop; ends it on Stop."""

        order = 55  # after fastai's Recorder (50): its smooth loss, log and values are up to date;
        # before ParamScheduler/LRFinder (60): their CancelFitException in after_batch
        # comes after this callback has recorded the batch
        run_valid = True

        def __init__(self, adapter: Any, sig: StopSignal, kind: str, n_epoch: int | None, total: int | None):
            super().__init__()
            self._adapter, self._sig, self._kind, self._n_epoch, self._total = adapter, sig, kind, n_epoch, total
            self._started = self._ended = self._stopped = False
            self._t0 = 0.0
            self.lr_finder = None

        # -- fastai events --------------------------------------------------------------------
        def before_fit(self) -> None:
            a, learn = self._adapter, self.learn
            frec = getattr(learn, "recorder", None)
            names = [str(n) for n in getattr(frec, "metric_names", ["epoch", "train_loss", "valid_loss"])]
            names = [n for n in names if n not in ("epoch", "time")]
            a.recorder.reset(["epoch", *names, "time"])
            if frec is not None:
                a.recorder.beta = getattr(getattr(frec, "smooth_loss", None), "beta", a.recorder.beta)
            n_iter = len(learn.dls.train)
            n_epoch = self._n_epoch or learn.n_epoch
            a.run = RunInfo(self._kind, n_epoch, n_iter, self._total or n_epoch * n_iter)
            for cb in learn.cbs:
                if type(cb).__name__ == "LRFinder":
                    self.lr_finder = cb
            self._started = True
            emit(a.observers, "fit_start", a)

        def before_epoch(self) -> None:
            self._adapter.run.epoch = self.learn.epoch
            self._t0 = time.monotonic()

        def before_batch(self) -> None:
            if self._sig.is_set():
                self._stopped = True
                raise CancelFitException()

        def after_batch(self) -> None:
            learn = self.learn
            if not learn.training or not len(learn.yb) or learn.loss is None:
                return
            loss = learn.loss.detach()
            if loss.ndim:
                loss = loss.float().mean()
            h = learn.opt.hypers[-1]
            mom = h.get("mom")
            self._adapter.recorder.add_batch(loss, as_float(h["lr"]), None if mom is None else as_float(mom))
            emit(self._adapter.observers, "batch_end", self._adapter)

        def after_epoch(self) -> None:
            a = self._adapter
            frec = getattr(self.learn, "recorder", None)
            vals = (
                list(frec.values[-1])
                if frec is not None and getattr(frec, "values", None)
                else [a.recorder.smooth_loss]
            )
            width = len(a.recorder.metric_names) - 2
            row = [as_float(v) for v in vals][:width]
            row += [math.nan] * (width - len(row))
            a.recorder.add_epoch(row, time.monotonic() - self._t0)
            emit(a.observers, "epoch_end", a)

        def after_fit(self) -> None:
            self.finish(None)

        # -- the end of a run, also after an error (fastai calls no after_fit then) -------------
        def finish(self, error: BaseException | None) -> None:
            if not self._started or self._ended:
                return
            self._ended = True
            a = self._adapter
            a.recorder.flush()
            if isinstance(error, KeyboardInterrupt):
                reason = "interrupted"
            elif error is not None:
                reason = "error"
            elif self._stopped:
                reason = self._sig.reason
            elif self._kind == "lr_find":
                reason = a.find_end_reason()
            else:
                reason = "completed"
            a.run.end_reason = reason
            emit(a.observers, "fit_end", a, None if reason == "interrupted" else error)

    _callback_cls = LRWidgetCallback
    return LRWidgetCallback
