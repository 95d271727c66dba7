"""LRWidget: the lr_find chart with draggable lr_min/lr_steep markers, bound to Find LR and Fit one cycle buttons."""

from __future__ import annotations

import inspect
import math
import numbers
import time
from collections.abc import Callable
from typing import Any

from ..core.checks import is_real, whole
from ..core.events import Observer
from ..core.find_result import LRFindResult
from ..core.interface import Driven
from ..integrations import fastai_adapter
from .background import Background
from .comparing import Comparing
from .layout import epoch_table, fmt_time, parse_lr, ui, widget_tree
from .runs import sweep_rates

__all__ = ["LRWidget"]

REDRAW_INTERVAL = 0.1  # seconds: at most ~10 redraws a second
REDRAW_COST_RATIO = 40  # and at most ~1/40 of the training thread's time spent redrawing
FIND_ORDER = ("start_lr", "end_lr", "num_it", "stop_div")
EARLY_ENDS = ("stopped", "interrupted")


def _plain(v: Any) -> Any:
    """numpy scalars as Python numbers, so that their repr is plain Python."""
    if isinstance(v, (bool, str)) or v is None:
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    return v


def _code(v: Any) -> str:
    """A value as written in code: its repr, functions by name (suggest_funcs=(valley, slide))."""
    if callable(v):
        f = getattr(v, "func", v)
        return getattr(f, "__name__", repr(v))
    if isinstance(v, tuple):
        return f"({', '.join(map(_code, v))}{',' if len(v) == 1 else ''})"
    if isinstance(v, list):
        return f"[{', '.join(map(_code, v))}]"
    return repr(v)


class LiveUpdates(Observer):
    """Passes one run's events on, redrawing at most every REDRAW_INTERVAL seconds (and at the end).

    `on_start(learn)` at the run's start, `on_redraw(learn, final)` while it runs and at its end; both are called on
    the training thread."""

    def __init__(self, on_start: Callable[[Driven], None], on_redraw: Callable[[Driven, bool], None]):
        self.on_start, self.on_redraw, self.next = on_start, on_redraw, 0.0
        self.redraws = 0  # how many times it redrew, the last run's end included (the throttle's test reads it)

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


class LRWidget(Comparing):
    """lr_find chart with draggable lr_min/lr_steep markers, Find LR / Fit one cycle / Stop, live training view."""

    _closed = False  # close() was called: a run still going drops the start as it ends

    def __init__(self, learn: Driven, epochs: int = 5, **kwargs: Any):
        if fastai_adapter.is_fastai_learner(learn):
            learn = fastai_adapter.wrap(learn)  # a fastai Learner: w.learn.learn is the fastai one
        if not isinstance(learn, Driven):
            raise TypeError(
                f"LRWidget drives an lrwidget Learner or a fastai Learner, got {type(learn).__name__}: build one with "
                "Learner(dls, model, ...)"
            )
        self.learn = learn
        self._background = Background()
        self._table_rows = 0
        self._find_range: tuple[float, float] | None = None
        self._phase = ""  # a sweep's "rate i of n · ", shown before the progress
        self._sweep_plan = self._sweep_first = 0  # the running sweep's rates, and its first run's index
        self.live = LiveUpdates(self._on_run_start, self._redraw)
        super().__init__(epochs, **kwargs)
        self.find_button.on_click(lambda _: self.find())
        self.fit_button.on_click(lambda _: self.fit())
        self.stop_button.on_click(lambda _: self.stop())
        self.sweep_button.on_click(lambda _: self.sweep())
        last = learn.recorder.lr_find_result
        if last is not None:
            self.finds.append(last)
            self._show_result(last)
            self._say("ready, from the last lr_find: " + self._markers_to_suggestions(last))
        else:
            self._say("ready: click Find LR to run the learning-rate range test, or drag the markers")

    # -- public API ---------------------------------------------------------------------------------

    def find(self, **lr_find_kwargs: Any) -> bool:
        """Start `learn.lr_find` in the background (the fields give start, end, steps; kwargs win); False if busy."""
        if self.busy:
            return False
        kw: dict[str, Any] = {}
        for key, box in (("start_lr", self.start_text), ("end_lr", self.end_text)):
            if key not in lr_find_kwargs:
                v = parse_lr(box.value)
                if v is None:
                    self._say(f"refused {key} {box.value!r}: not a positive finite number; lr_find not started")
                    return False
                kw[key] = v
        if "num_it" not in lr_find_kwargs:
            kw["num_it"] = int(self.steps_box.value)
        kw.update({k: _plain(v) for k, v in lr_find_kwargs.items() if k != "show_plot"})
        kw = {k: kw[k] for k in sorted(kw, key=lambda k: FIND_ORDER.index(k) if k in FIND_ORDER else len(FIND_ORDER))}
        inspect.signature(self.learn.lr_find).bind(**kw)  # a keyword lr_find lacks: TypeError now; a bad value: later
        lo, hi = parse_lr(kw.get("start_lr")), parse_lr(kw.get("end_lr"))
        self._find_range = (lo, hi) if lo is not None and hi is not None and lo < hi else None
        if self._find_range is not None:
            self._show_find_options(kw)  # not a refused range: the next click would run it again
        extra = "" if "suggest_funcs" in kw else self.learn.lr_find_code_args  # unless the call names its own
        code = f"learn.lr_find({', '.join(f'{k}={_code(v)}' for k, v in kw.items())}{extra})"
        return self._start(
            "lr_find", "lr_find", lambda: self.learn.lr_find(**kw, show_plot=False), code, self._after_find
        )

    def fit(self, epochs: int | None = None) -> bool:
        """Start `learn.fit_one_cycle(epochs, lr_max=slice(lr_min, lr_steep))` in the background; False if busy."""
        if self.busy:
            return False
        if epochs is not None:
            self.epochs = epochs
        n, lo, hi, from_start = self.epochs, self.lr_min, self.lr_steep, self.from_start
        code = f"learn.fit_one_cycle({n!r}, lr_max=slice({lo!r}, {hi!r})){self._accum_said()}"

        def call() -> None:
            self._at_start(restore=from_start)
            self._fit_recorded(n, lo, hi, code, from_start)

        return self._start("fit", "fit_one_cycle", call, code, self._after_fit)

    def sweep(self, lrs: Any = None, epochs: int = 1) -> bool:
        """Short fits from the same start at several rates (five over a decade each side of lr_steep), as runs."""
        if self.busy:
            return False
        n = whole("epochs", epochs)
        if lrs is None:
            rates = sweep_rates(self.lr_steep)
        else:
            rates = list(lrs) if isinstance(lrs, (list, tuple)) or hasattr(lrs, "__array__") else None
            if not rates or not all(is_real(r) and math.isfinite(r) and r > 0 for r in rates):
                raise ValueError(f"lrs must be a non-empty list of positive finite learning rates, got {lrs!r}")
            rates = [float(r) for r in rates]
        ratio = self.lr_min / self.lr_steep  # each slice keeps the markers' ratio: one group trains at the rate
        plan = [(r * ratio, r) for r in rates]
        code = f"w.sweep(lrs={rates!r}, epochs={n!r})"

        def call() -> int:
            self._at_start(restore=False)  # the start is taken now if there is none yet
            done = 0
            try:
                for i, (lo, hi) in enumerate(plan):
                    if self.learn.guard.signal is not None and self.learn.guard.signal.is_set():
                        break
                    self.learn.restore_state(self._start_state)
                    self._phase = f"sweep rate {i + 1} of {len(plan)} · "
                    fit_code = f"learn.fit_one_cycle({n!r}, lr_max=slice({lo!r}, {hi!r})){self._accum_said()}"
                    self._say(f"sweep: rate {i + 1} of {len(plan)}, lr {hi:.4g}: {fit_code}")
                    self._fit_recorded(n, lo, hi, fit_code, from_start=True, sweep=True)
                    done += 1
                    if self.learn.run is not None and self.learn.run.end_reason in EARLY_ENDS:
                        break
            finally:
                self._phase = ""
                self.learn.restore_state(self._start_state)  # after a Stop or an error too
            return done

        self._sweep_plan, self._sweep_first = len(plan), len(self.runs)
        return self._start("sweep", "sweep", call, code, self._after_sweep)

    def stop(self) -> None:
        """End the running lr_find (state restored) or fit (weights kept) at the next batch."""
        if not self.busy:
            return
        self._background.stop()
        self._say(f"stopping {self._background.kind} at the next batch…")

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run ends and re-raise its error; an interrupt here stops the run first, as Stop does."""
        self._background.wait(timeout)

    def close(self) -> None:
        """Stop a running lr_find or fit (a closed widget could not), then close every widget it is made of; the start
        goes (a copy on disk deletes its files), at the run's end if one is still running."""
        self.stop()
        self._closed = True
        if not self.busy:
            self._drop_start()
        for w in widget_tree(self):
            if w is not self:
                w.close()
        super().close()

    # -- the background run ---------------------------------------------------------------------------------

    def _start(self, kind: str, method: str, call: Callable[[], Any], code: str, done: Callable[[Any], None]) -> bool:
        """Reserve the learner for `learn.method` (from now on a Stop counts) and run `call` in the background."""
        try:
            sig = self.learn.guard.reserve(method)
        except RuntimeError:
            self._say(
                f"the learner is busy with another run (another widget or a cell), so {kind} did not start: wait for "
                "it to end, or stop it"
            )
            return False
        self.set_trait("busy", True)
        self._hide_error()
        self.set_trait("code", code)
        self._say(f"{kind} running: {code}")
        if self.live not in self.learn.observers:
            self.learn.observers.append(self.live)
        self._background.start(kind, self.learn, sig, call, done, self._on_error, self._on_end)
        return True

    def _on_error(self, e: BaseException, tb: str) -> None:
        self._show_error(self._background.kind, e, tb)

    def _on_end(self) -> None:
        if self.live in self.learn.observers:
            self.learn.observers.remove(self.live)
        self._took_start = False
        self.set_trait("busy", False)
        if self._closed:  # closed while this run went (busy is False first: close() or this drops it, or both)
            self._drop_start()

    def _show_find_options(self, kw: dict) -> None:
        for key, box in (("start_lr", self.start_text), ("end_lr", self.end_text)):
            v = parse_lr(kw.get(key))
            if v is not None:
                box.value = f"{v:.6g}"
        if isinstance(kw.get("num_it"), int) and self.steps_box.min <= kw["num_it"] <= self.steps_box.max:
            self.steps_box.value = kw["num_it"]

    @ui
    def _after_find(self, res: LRFindResult) -> None:
        steps, early = len(res.lrs), res.end_reason in EARLY_ENDS
        self.finds.append(res)
        self._show_result(res, self._find_range if early else None)
        self._show_earlier()
        note = f"; {self.learn.note}" if self.learn.note else ""  # what a fastai Learner cannot tell
        run = self.learn.run
        if run is not None and run.kind == "lr_find" and run.snapshot:
            note += f"; its copy of the state was {run.snapshot} (deleted)"
        if early:
            restored = self.learn.lr_find_restores
            self._say(f"lr_find {res.end_reason} after {steps} steps; {restored}; markers not moved{note}")
        else:
            self._say(f"lr_find done ({steps} steps, {res.end_reason}): " + self._markers_to_suggestions(res) + note)

    @ui
    def _after_sweep(self, done: int) -> None:
        total, last = self._sweep_plan, self.runs[-1] if self.runs else None
        if last is not None and last.end_reason in EARLY_ENDS:
            head = f"sweep {last.end_reason} at rate {done} of {total}; the {done} runs made are kept"
        else:
            head = f"sweep done: {done} rates from the same start"
        self._say(
            f"{head}; {self._best_said(self._sweep_first)}: click its row to put the markers there; the weights are "
            f"back at the start{self._start_said()}"
        )

    def _unit(self, plural: bool = False) -> str:
        """What the progress counts: batches, or optimizer steps when a step sums several batches' gradients."""
        if self.learn.accum_steps > 1:
            return "steps" if plural else "step"
        return "batches" if plural else "batch"

    def _accum_said(self) -> str:
        """What `w.code` adds for a learner that accumulates gradients (the call alone would not say it)."""
        a = self.learn.accum_steps
        return f"  # learn.accum_steps == {a}: one optimizer step every {a} batches" if a > 1 else ""

    @ui
    def _after_fit(self, _: Any) -> None:
        run, rec = self.learn.run, self.learn.recorder
        if run.end_reason in EARLY_ENDS:
            units = self._unit(plural=True)
            where = (
                f"in the last validation, after all {run.total} {units} trained (that epoch has no validation row)"
                if rec.n_batches >= run.total
                else f"after {rec.n_batches}/{run.total} {units}"
            )
            done = len(rec.values)
            self._say(
                f"fit {run.end_reason} {where}; {done} full epoch{'s' * (done != 1)}; the weights keep the training "
                "done"
            )
            return
        last = ""
        if rec.values:
            last = " · " + ", ".join(f"{n} {v:.4f}" for n, v in zip(rec.metric_names[1:-1], rec.values[-1]))
        began = " from the start" if self.runs and self.runs[-1].from_start else ""
        where = self._start_said() if began or self._took_start else ""
        self._say(f"fit done{began}: {len(rec.values)} epochs in {fmt_time(run.elapsed)}{last}{where}")

    # -- called on the training thread by LiveUpdates ----------------------------------------------------

    @ui
    def _on_run_start(self, learn: Driven) -> None:
        run = learn.run
        self._show_progress(run.total)
        if run.kind == "lr_find" and run.snapshot:
            self._say(f"lr_find running: {self.code}; its copy of the state is {run.snapshot}")
        if run.kind == "fit":
            self._table_rows = 0
            self._show_training(learn.recorder.metric_names)
        self._redraw(learn)

    @ui
    def _redraw(self, learn: Driven, final: bool = False) -> None:
        run, rec = learn.run, learn.recorder
        k = rec.n_batches
        self.progress.value = min(k, self.progress.max)
        elapsed = run.elapsed
        left = 0.0 if final else elapsed / k * (run.total - k) if k else math.nan
        fit = run.kind == "fit"
        where = (
            f"epoch {min(run.epoch + 1, run.n_epoch)}/{run.n_epoch} · {self._unit()} {k}/{run.total}"
            if fit
            else f"step {k}/{run.total}"
        )
        if learn.accum_steps > 1:
            where += f" · {learn.accum_steps} batches a step"
        end = f" · {run.end_reason}" if final and run.end_reason else ""
        self.progress_label.value = (
            f"{self._phase}{run.kind} · {where} · {fmt_time(elapsed)} elapsed · {fmt_time(left)} left{end}"
        )
        if fit:
            self.loss_chart.update(rec)
            self.sched_chart.update(rec)
            if len(rec.values) != self._table_rows:
                self._table_rows = len(rec.values)
                self.table_html.value = epoch_table(rec.metric_names, rec.values, rec.times)
                if not final:
                    self._say(f"fit running: {len(rec.values)}/{run.n_epoch} epochs done")
        elif k:
            self.chart_view.show_curve(rec.lrs, rec.losses, rec.raw_losses, self._find_range)
