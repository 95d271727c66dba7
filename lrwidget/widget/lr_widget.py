"""LRWidget: the lr_find chart with draggable lr_min/lr_steep markers, bound to Find LR and Fit one cycle buttons.

It is made of parts, each with its own small interface: the markers (markers.py), the buttons and fields
(controls.py), the messages (messages.py), the live training view (training.py), the runs and lr_find results
(history.py) with their same start (start.py), the search (search.py) and the background runner (background.py);
layout.py arranges them.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as W
import traitlets as T

from ..core import schedules
from ..core.checks import whole
from ..core.find_result import LRFindResult
from ..core.interface import Driven
from ..core.search import LRSearchResult
from ..integrations import fastai_adapter
from . import calls, charts, reliability, reports
from .background import Background
from .colab import enable_colab_widgets
from .controls import MAX_EPOCHS, Controls
from .formats import parse_lr
from .history import History
from .layout import arrange, ui, widget_tree
from .markers import DEFAULT_LRS, LearningRate, Markers
from .messages import Messages
from .reports import EARLY_ENDS
from .runs import Run
from .search import RepeatPhase, Searching, watching
from .start import Start
from .sweep import Sweeping
from .training import LiveUpdates, TrainingView

__all__ = ["LRWidget"]


class LRWidget(W.VBox):
    """lr_find chart with draggable lr_min/lr_steep markers, Find LR / Fit one cycle / Stop, live training view."""

    lr_min = LearningRate(DEFAULT_LRS[0], help="lower end of the slice passed to fit_one_cycle (marker lr_min)")
    lr_steep = LearningRate(DEFAULT_LRS[1], help="upper end of the slice passed to fit_one_cycle (marker lr_steep)")
    epochs = T.Int(5, help="epochs for Fit one cycle")
    from_start = T.Bool(False, help="each Fit first puts back the weights, optimizer and random state of the start")
    busy = T.Bool(False, read_only=True, help="True while lr_find or fit runs in the background")
    status = T.Unicode("", read_only=True, help="what happens now, or what just happened")
    code = T.Unicode("", read_only=True, help="the Python call the last run made, values in full precision")

    _closed = False  # close() was called: a run still going drops the start as it ends
    start: Start | None = None  # also for close() on a widget whose __init__ failed

    def __init__(self, learn: Driven, epochs: int = 5, **kwargs: Any):
        if fastai_adapter.is_fastai_learner(learn):
            learn = fastai_adapter.wrap(learn)  # a fastai Learner: w.learn.learn is the fastai one
        if not isinstance(learn, Driven):
            raise TypeError(
                f"LRWidget drives an lrwidget Learner or a fastai Learner, got {type(learn).__name__}: build one with "
                "Learner(dls, model, ...)"
            )
        # before any display, so also for a widget shown inside the user's own box: Colab marks each widget output
        # for its manager as it is published
        enable_colab_widgets()
        self.learn = learn
        self._ui_lock = threading.RLock()  # one for all the parts: the run's thread and the kernel's take turns
        self._find_range: tuple[float, float] | None = None

        # the parts
        self.chart_view = charts.LRFindChart()
        self.chart = self.chart_view.figure
        self.markers = Markers(self.chart_view, self._ui_lock, self._say)
        self.controls = Controls(epochs)
        self.messages = Messages()
        self.training = TrainingView()
        self.history = History(self.chart_view, self._ui_lock, self.use_run)
        self.start = Start(learn)
        self.background = Background()
        self.live = LiveUpdates(self._on_run_start, self._redraw)
        c, t, m = self.controls, self.training, self.messages
        self.sweeping = Sweeping(learn, self.start, self.history, t, self._say)
        self.searching = Searching(learn, self.start, self.history, self.markers, c, t, self._say)
        self.find_button, self.fit_button, self.stop_button = c.find_button, c.fit_button, c.stop_button
        self.sweep_button, self.reset_button, self.search_button = c.sweep_button, c.reset_button, c.search_button
        # parts' widgets that the tests of other layers and notebooks read under these names
        self.runs_panel, self.progress, self.progress_label = self.history.panel, t.progress, t.progress_label
        self.table_html, self.loss_chart = t.table_html, t.loss_chart
        self.code_html, self.error_box, self.traceback_html = m.code_html, m.error_box, m.traceback_html

        super().__init__(children=arrange(self.chart, self.markers, c, m, t, self.history.panel), **kwargs)
        self.add_class("lrw-root")
        self.epochs = epochs
        T.link((self, "epochs"), (c.epochs_box, "value"))
        T.link((self, "lr_min"), (self.markers, "lr_min"))
        T.link((self, "lr_steep"), (self.markers, "lr_steep"))
        T.link((self, "from_start"), (c.from_start_box, "value"))
        c.find_button.on_click(lambda _: self.find())
        c.fit_button.on_click(lambda _: self.fit())
        c.stop_button.on_click(lambda _: self.stop())
        c.sweep_button.on_click(lambda _: self.sweep())
        c.search_button.on_click(lambda _: self.search())
        c.reset_button.on_click(lambda _: self._said(self.reset))
        last = learn.recorder.lr_find_result
        if last is not None:
            self.history.add_find(last)
            self.markers.show_result(last)
            self._say("ready, from the last lr_find: " + self.markers.to_suggestions(last))
        else:
            self._say("ready: click Find LR to run the learning-rate range test, or drag the markers")

    # -- public API ---------------------------------------------------------------------------------

    @property
    def runs(self) -> list[Run]:
        """A Run per Fit of this widget (the button, `fit()` or a sweep), and those loaded from a history file."""
        return self.history.runs

    @runs.setter
    def runs(self, runs: list[Run]) -> None:
        self.history.runs = list(runs)

    @property
    def finds(self) -> list[LRFindResult]:
        """The LRFindResults of this widget (and those loaded from a history file)."""
        return self.history.finds

    @property
    def searches(self) -> list[LRSearchResult]:
        """The LRSearchResults of this widget's searches, stopped ones too."""
        return self.history.searches

    @property
    def result(self) -> LRFindResult | None:
        """The lr_find result the chart shows and the snap menu offers."""
        return self.markers.result

    @property
    def has_start(self) -> bool:
        """True once there is a start to go back to (the first Fit took it, or mark_start())."""
        return self.start.exists

    def snap(self, marker: str, suggestion: str) -> None:
        """Move marker 'lr_min' or 'lr_steep' to a suggestion of the last lr_find ('valley', 'slide', ...)."""
        self.markers.snap(marker, suggestion)

    def find(self, **lr_find_kwargs: Any) -> bool:
        """Start `learn.lr_find` in the background (the fields give start, end, steps; kwargs win); False if busy."""
        if self.busy:
            return False
        fields, refused = self.controls.find_args(lr_find_kwargs)
        if refused:
            self._say(refused)
            return False
        kw = calls.find_kwargs(fields, lr_find_kwargs)
        inspect.signature(self.learn.lr_find).bind(**kw)  # a keyword lr_find lacks: TypeError now; a bad value: later
        lo, hi = parse_lr(kw.get("start_lr")), parse_lr(kw.get("end_lr"))
        self._find_range = (lo, hi) if lo is not None and hi is not None and lo < hi else None
        if self._find_range is not None:
            self.controls.show_find_args(kw)  # not a refused range: the next click would run it again
        extra = "" if "suggest_funcs" in kw else self.learn.lr_find_code_args  # unless the call names its own
        code = calls.find_code(kw, extra)

        def call() -> LRFindResult:
            if "repeats" not in kw:
                return self.learn.lr_find(**kw, show_plot=False)
            return watching(self.learn, RepeatPhase(self.training), lambda: self.learn.lr_find(**kw, show_plot=False))

        return self._launch("lr_find", "lr_find", call, code, self._after_find)

    def fit(self, epochs: int | None = None) -> bool:
        """Start `learn.fit_one_cycle(epochs, lr_max=slice(lr_min, lr_steep))` in the background; False if busy."""
        if self.busy:
            return False
        if epochs is not None:
            self.epochs = epochs
        n, lo, hi, from_start = self.epochs, self.lr_min, self.lr_steep, self.from_start
        code = calls.fit_code(n, lo, hi, self.learn.accum_steps)

        def call() -> None:
            self.start.begin(restore=from_start)
            began_at = self.start.name if from_start or self.start.took else ""  # else: from the weights as they are
            self.training.rates = (lo, hi)
            self.history.record_fit(self.learn, n, lo, hi, code, from_start, began_at, sweep=False)

        return self._launch("fit", "fit_one_cycle", call, code, self._after_fit)

    def sweep(self, lrs: Any = None, epochs: int = 1) -> bool:
        """Short fits from the same start at several rates (five over a decade each side of lr_steep), as runs."""
        if self.busy:
            return False
        code, call = self.sweeping.prepare(lrs, whole("epochs", epochs), self.lr_min, self.lr_steep)
        return self._launch("sweep", "sweep", call, code, self._after_sweep)

    def search(self, epochs: int | None = None, budget: float | None = None) -> bool:
        """Start `learn.lr_search(epochs, budget=...)` from the start in the background: each probe a run, the markers
        at its best at the end (lr_min keeping its ratio); False if busy, or refused (the budget field)."""
        if self.busy:
            return False
        job = self.searching.prepare(self.epochs if epochs is None else whole("epochs", epochs), budget)
        if isinstance(job, str):
            self._say(job)
            return False
        if epochs is not None:
            self.epochs = epochs
        return self._launch("search", "lr_search", job[1], job[0], self._after_search)

    def stop(self) -> None:
        """End the running lr_find (state restored) or fit (weights kept) at the next batch."""
        if not self.busy:
            return
        self.background.stop()
        self._say(f"stopping {self.background.kind} at the next batch…")

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run ends and re-raise its error; an interrupt here stops the run first, as Stop does."""
        self.background.wait(timeout)

    def mark_start(self) -> None:
        """Take the learner's state now as the start that Fits (with `from_start`), sweeps and reset() go back to."""
        self.start.mark()  # RuntimeError while a run holds the learner
        self._say(
            "start marked: fits with 'each fit from the same start', sweeps and Reset begin from this state"
            + self.start.said()
        )

    def reset(self) -> None:
        """Put back the weights, optimizer and random state of the start."""
        self.start.put_back()
        self._say("reset: the weights, optimizer and random state are those of the start" + self.start.said())

    def use_run(self, index: int) -> None:
        """Put the markers at the rates of run `index` (what a click on its row does)."""
        r = self.runs[index]
        self.markers.put(r.lr_min, r.lr_steep)
        self._say(f"markers at run #{index}'s rates: lr_min={r.lr_min:.4g}, lr_steep={r.lr_steep:.4g}")

    def save_history(self, path: str | Path) -> Path:
        """Write this widget's lr_find curves and runs to `path` as JSON."""
        path, n_finds, n_runs = self.history.save(path)
        self._say(f"history saved to {path}: {n_finds} lr_find curves, {n_runs} runs")
        return path

    def load_history(self, path: str | Path) -> None:
        """Add the lr_find curves and runs of a history file, marked as loaded; a broken file changes nothing."""
        with self._ui_lock:
            added = self.history.load(path)
            n_runs = len(self.history.runs)
            if self.result is None and added:
                self.markers.show_result(added[-1])
            self.history.show_earlier(self.result)
        self._say(f"loaded from {path}: {len(added)} lr_find curves, {n_runs} runs")

    def close(self) -> None:
        """Stop a running lr_find or fit (a closed widget could not), then close every widget it is made of; the start
        goes (a copy on disk deletes its files), at the run's end if one is still running."""
        self.stop()
        self._closed = True
        if not self.busy and self.start is not None:
            self.start.drop()
        for w in widget_tree(self):
            if w is not self:
                w.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        enable_colab_widgets()  # at the first display too: google.colab may be imported after the widget was made
        # IPython's display protocol is ipywidgets' only hook at display time: the base class's own method
        return super()._repr_mimebundle_(**kwargs)

    @T.validate("epochs")
    def _valid_epochs(self, proposal: T.Bunch) -> int:
        v = proposal["value"]
        if isinstance(v, bool) or not 1 <= v <= MAX_EPOCHS:
            raise T.TraitError(f"epochs must be a whole number from 1 to {MAX_EPOCHS:,}, got {v!r}")
        return int(v)

    @T.observe("busy")
    def _on_busy(self, change: T.Bunch) -> None:
        self.controls.set_busy(change["new"])

    @T.observe("status")
    def _on_status(self, change: T.Bunch) -> None:
        self.messages.show_status(change["new"])

    @T.observe("code")
    def _on_code(self, change: T.Bunch) -> None:
        self.messages.show_code(change["new"])

    # -- the background run -------------------------------------------------------------------------

    def _launch(self, kind: str, method: str, call: Callable[[], Any], code: str, done: Callable[[Any], None]) -> bool:
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
        self.messages.hide_error()
        self.set_trait("code", code)
        self._say(f"{kind} running: {code}")
        if self.live not in self.learn.observers:
            self.learn.observers.append(self.live)
        self.background.start(kind, self.learn, sig, call, done, self._on_error, self._on_end)
        return True

    @ui
    def _say(self, msg: str) -> None:
        self.set_trait("status", msg)

    def _said(self, action: Callable[[], None]) -> None:
        """Run a button's action; its refusal goes to the status, not to a traceback nobody sees."""
        try:
            action()
        except RuntimeError as e:
            self._say(str(e))

    @ui
    def _on_error(self, e: BaseException, tb: str) -> None:
        self._say("error: " + self.messages.show_error(self.background.kind, e, tb))

    def _on_end(self) -> None:
        if self.live in self.learn.observers:
            self.learn.observers.remove(self.live)
        self.start.took = False
        self.set_trait("busy", False)
        if self._closed:  # closed while this run went (busy is False first: close() or this drops it, or both)
            self.start.drop()

    @ui
    def _after_find(self, res: LRFindResult) -> None:
        early = res.end_reason in EARLY_ENDS
        self.history.add_find(res)
        self.markers.show_result(res, self._find_range if early else None)
        self.history.show_earlier(res)
        said = "" if early else self.markers.to_suggestions(res)
        warned = "" if early else reliability.judge_result(res, self.markers.sitting_on()).said()
        self._say(reports.find_ended(res, self.learn, said + (f"; {warned}" if warned else "")))

    @ui
    def _after_fit(self, _: Any) -> None:
        began = bool(self.runs) and self.runs[-1].from_start
        where = self.start.said() if began or self.start.took else ""
        self._say(reports.fit_ended(self.learn, began, where))

    @ui
    def _after_sweep(self, done: int) -> None:
        self._say(self.sweeping.ended(done))

    @ui
    def _after_search(self, res: LRSearchResult) -> None:
        self._say(self.searching.ended(res))

    # -- called on the training thread by LiveUpdates ---------------------------------------------------

    @ui
    def _on_run_start(self, learn: Driven) -> None:
        run = learn.run
        self.training.begin(run.total)
        if run.kind == "lr_find" and run.copy_on_disk:
            self._say(f"lr_find running: {self.code}; its copy of the state is {run.copy_on_disk}")
        if run.kind == "fit":
            self.training.open(learn.recorder.metric_names, run.total, *self._planned(run.total))
        self._redraw(learn)

    @ui
    def _redraw(self, learn: Driven, final: bool = False) -> None:
        run, rec = learn.run, learn.recorder
        new_row = self.training.update(learn, final, reports.unit(learn.accum_steps))
        if run.kind == "fit":
            if new_row and not final:
                self._say(f"fit running: {len(rec.values)}/{run.n_epoch} epochs done")
        elif rec.n_batches:
            self.chart_view.show_curve(rec.lrs, rec.losses, rec.raw_losses, self._find_range)

    def _planned(self, total: int) -> tuple[Any, Any]:
        """The one-cycle schedule the running fit follows (last parameter group): its lrs and momenta per step."""
        try:
            lrs, moms = schedules.one_cycle(total, self.training.rates[1])
        except ValueError:
            return (), ()
        return lrs[:, -1], moms
