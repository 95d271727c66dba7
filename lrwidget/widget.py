"""LRWidget: the lr_find chart with draggable lr_min/lr_steep markers, bound to Find LR and Fit one cycle buttons."""

from __future__ import annotations

import html
import inspect
import math
import numbers
import threading
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

import ipywidgets as W
import traitlets as T

from . import fastai_adapter, plots
from .learner import MIN_NUM_IT, Learner, LRFindResult, Observer

__all__ = ["LRWidget"]

NAMES = ("lr_min", "lr_steep")
DEFAULT_LRS = (1e-4, 1e-2)
REDRAW_INTERVAL = 0.1  # seconds: at most ~10 redraws a second
REDRAW_COST_RATIO = 40  # and at most ~1/40 of the training thread's time spent redrawing
FIND_ORDER = ("start_lr", "end_lr", "num_it", "stop_div")
MAX_EPOCHS = 1_000_000
SNAP_PROMPT = "snap a marker to a suggestion…"
MARKER_COLORS = {"lr_min": plots.SUGGESTION_COLORS["lr_min"], "lr_steep": plots.SUGGESTION_COLORS["lr_steep"]}


def parse_lr(text: Any) -> float | None:
    """The positive finite number written in `text`, or None."""
    try:
        v = float(str(text).strip())
    except ValueError:
        return None
    return v if math.isfinite(v) and v > 0 else None


def fmt_value(v: float) -> str:
    """A learning rate for a text field: six significant digits."""
    return f"{v:.6g}"


def fmt_time(s: float) -> str:
    """Seconds as m:ss (or h:mm:ss)."""
    if not math.isfinite(s):
        return "?"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


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


def epoch_table(names: list[str], values: list[list[float]], times: list[float]) -> str:
    """The per-epoch results as an HTML table (fastai's columns: epoch, losses, metrics, time)."""
    cell = "style='padding:2px 10px;text-align:right'"
    head = "".join(f"<th {cell}>{html.escape(n)}</th>" for n in names)
    rows = []
    for i, (vals, t) in enumerate(zip(values, times)):
        cells = [str(i), *(f"{v:.6f}" if math.isfinite(v) else "—" for v in vals), fmt_time(t)]
        rows.append("<tr>" + "".join(f"<td {cell}>{c}</td>" for c in cells) + "</tr>")
    return (
        f"<table style='border-collapse:collapse;font-family:monospace'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _widget_tree(root: W.Widget) -> list[W.Widget]:
    """`root` and every widget its synced traits hold, once each: boxes' children, a figure's marks, axes, scales."""
    seen: dict[int, W.Widget] = {}
    todo = [root]
    while todo:
        w = todo.pop()
        if id(w) in seen:
            continue
        seen[id(w)] = w
        for key in w.keys:
            v = getattr(w, key, None)
            values = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else (v,)
            todo += [x for x in values if isinstance(x, W.Widget)]
    return list(seen.values())


class LearningRate(T.Float):
    """A float trait that also takes numpy numbers and 0-d tensors or arrays, and refuses bools."""

    def validate(self, obj: Any, value: Any) -> float:
        if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.error(obj, value)
        return super().validate(obj, float(value))


class _Watcher(Observer):
    """Passes one run's events to the widget, redrawing at most every REDRAW_INTERVAL seconds (and at the end)."""

    def __init__(self, widget: LRWidget):
        self.widget, self.next = widget, 0.0

    def fit_start(self, learn: Learner) -> None:
        self.widget._on_run_start(learn)
        self.next = time.monotonic() + REDRAW_INTERVAL

    def batch_end(self, learn: Learner) -> None:
        t = time.monotonic()
        if t >= self.next:
            self.widget._redraw(learn)
            done = time.monotonic()
            self.next = done + max(REDRAW_INTERVAL, (done - t) * REDRAW_COST_RATIO)

    def fit_end(self, learn: Learner, error: BaseException | None) -> None:
        self.widget._redraw(learn, final=True)


class LRWidget(W.VBox):
    """lr_find chart with draggable lr_min/lr_steep markers, Find LR / Fit one cycle / Stop, live training view."""

    lr_min = LearningRate(DEFAULT_LRS[0], help="lower end of the slice passed to fit_one_cycle (marker lr_min)")
    lr_steep = LearningRate(DEFAULT_LRS[1], help="upper end of the slice passed to fit_one_cycle (marker lr_steep)")
    epochs = T.Int(5, help="epochs for Fit one cycle")
    busy = T.Bool(False, read_only=True, help="True while lr_find or fit runs in the worker thread")
    status = T.Unicode("", read_only=True, help="what happens now, or what just happened")
    code = T.Unicode("", read_only=True, help="the Python call the last run made, values in full precision")

    def __init__(self, learn: Learner, epochs: int = 5, **kwargs: Any):
        if fastai_adapter.is_fastai_learner(learn):
            learn = fastai_adapter.wrap(learn)  # a fastai Learner: w.learn.learn is the fastai one
        self.learn = learn
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._kind = ""
        self._stopping = False
        self._redraws = 0
        self._table_rows = 0
        self._placing: set[str] = set()
        self._note = ""
        self._find_range: tuple[float, float] | None = None
        self._watcher = _Watcher(self)
        self.result: LRFindResult | None = None

        self.chart_view = plots.LRFindChart()
        self.chart = self.chart_view.figure
        self._markers = {n: self.chart_view.add_marker(n, MARKER_COLORS[n]) for n in NAMES}
        self.markers = {n: m.handle for n, m in self._markers.items()}
        style = {"description_width": "initial"}
        self.texts = {
            n: W.Text(description=n, continuous_update=False, style=style, layout=W.Layout(width="190px"))
            for n in NAMES
        }
        self.snap_menu = W.Dropdown(options=[(SNAP_PROMPT, None)], value=None, layout=W.Layout(width="300px"))
        self.find_button = W.Button(
            description="Find LR", icon="search", button_style="info", tooltip="run learn.lr_find() in the background"
        )
        self.start_text = W.Text(
            value="1e-07", description="start", continuous_update=False, style=style, layout=W.Layout(width="150px")
        )
        self.end_text = W.Text(
            value="10", description="end", continuous_update=False, style=style, layout=W.Layout(width="130px")
        )
        self.steps_box = W.BoundedIntText(
            value=100, min=MIN_NUM_IT, max=100_000, description="steps", style=style, layout=W.Layout(width="150px")
        )
        self.fit_button = W.Button(
            description="Fit one cycle",
            icon="play",
            button_style="success",
            tooltip="learn.fit_one_cycle(epochs, lr_max=slice(lr_min, lr_steep))",
        )
        self.epochs_box = W.BoundedIntText(
            value=epochs, min=1, max=MAX_EPOCHS, description="epochs", style=style, layout=W.Layout(width="150px")
        )
        self.stop_button = W.Button(
            description="Stop",
            icon="stop",
            button_style="danger",
            disabled=True,
            tooltip="end the run at the next batch",
        )
        self.status_html = W.HTML()
        self.error_html = W.HTML()
        self.traceback_html = W.HTML()
        self.traceback_box = W.Accordion(children=[self.traceback_html], titles=("traceback",), selected_index=None)
        self.error_box = W.VBox([self.error_html, self.traceback_box], layout=W.Layout(display="none"))
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="300px"))
        self.progress_label = W.Label()
        self.progress_box = W.HBox([self.progress, self.progress_label], layout=W.Layout(display="none"))
        self.code_html = W.HTML(layout=W.Layout(display="none"))
        self.table_html = W.HTML()
        self.loss_chart, self.sched_chart = plots.LossChart(), plots.SchedChart()
        self.loss_chart.figure.layout.width = self.sched_chart.figure.layout.width = "50%"
        # the charts join the panel when it is first shown: drawn hidden, at zero width, they log SVG errors
        self._train_charts = W.HBox([self.loss_chart.figure, self.sched_chart.figure])
        self.train_box = W.VBox([self.table_html], layout=W.Layout(display="none"))
        super().__init__(
            children=[
                self.chart,
                W.HBox([self.texts["lr_min"], self.texts["lr_steep"], self.snap_menu]),
                W.HBox([self.find_button, self.start_text, self.end_text, self.steps_box]),
                W.HBox([self.fit_button, self.epochs_box, self.stop_button]),
                self.status_html,
                self.error_box,
                self.progress_box,
                self.code_html,
                self.train_box,
            ],
            **kwargs,
        )

        self.epochs = epochs
        W.link((self, "epochs"), (self.epochs_box, "value"))
        for n in NAMES:
            self.markers[n].observe(partial(self._on_handle_x, n), names="x")
            self.markers[n].on_drag(partial(self._on_drag, n))
            self.markers[n].on_drag_end(partial(self._on_drag_end, n))
            self.texts[n].observe(partial(self._on_text, n), names="value")
            self._place(n)
        self.chart_view.points.on_element_click(self._on_point_click)
        self.snap_menu.observe(self._on_snap_menu, names="value")
        self.find_button.on_click(lambda _: self.find())
        self.fit_button.on_click(lambda _: self.fit())
        self.stop_button.on_click(lambda _: self.stop())
        last = getattr(learn.recorder, "lr_find_result", None)
        if last is not None:
            self._show_result(last)
            self._say("ready, from the last lr_find: " + self._markers_to_suggestions(last))
        else:
            self._say("ready: click Find LR to run the learning-rate range test, or drag the markers")

    # -- public API ---------------------------------------------------------------------------------

    def find(self, **lr_find_kwargs: Any) -> bool:
        """Start `learn.lr_find` in the background (fields give start, end, steps; kwargs override); False if busy.

        Keywords that `lr_find` does not take raise TypeError here; bad values surface as the worker's error.
        """
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
        inspect.signature(self.learn.lr_find).bind(**kw)
        lo, hi = parse_lr(kw.get("start_lr")), parse_lr(kw.get("end_lr"))
        self._find_range = (lo, hi) if lo is not None and hi is not None and lo < hi else None
        if self._find_range is not None:
            self._show_find_options(kw)  # not a refused range: the next click would run it again
        # the fastai adapter's suggest_funcs, unless the call names its own
        extra = "" if "suggest_funcs" in kw else getattr(self.learn, "lr_find_code_args", "")
        code = f"learn.lr_find({', '.join(f'{k}={_code(v)}' for k, v in kw.items())}{extra})"
        return self._start("lr_find", lambda: self.learn.lr_find(**kw, show_plot=False), code, self._after_find)

    def fit(self, epochs: int | None = None) -> bool:
        """Start `learn.fit_one_cycle(epochs, lr_max=slice(lr_min, lr_steep))` in the background; False if busy."""
        if self.busy:
            return False
        if epochs is not None:
            self.epochs = epochs
        n, lo, hi = self.epochs, self.lr_min, self.lr_steep
        code = f"learn.fit_one_cycle({n!r}, lr_max=slice({lo!r}, {hi!r}))"
        return self._start("fit", lambda: self.learn.fit_one_cycle(n, lr_max=slice(lo, hi)), code, self._after_fit)

    def stop(self) -> None:
        """End the running lr_find (state restored) or fit (weights kept) at the next batch."""
        if not self.busy:
            return
        self._stopping = True
        self.learn.stop()
        self._say(f"stopping {self._kind} at the next batch…")

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run ends; re-raise the worker's exception, if any."""
        t = self._thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                raise TimeoutError(f"{self._kind} still running after {timeout} s")
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop a running lr_find or fit (a closed widget could not), then close every widget it is made of."""
        self.stop()
        for w in _widget_tree(self):
            if w is not self:
                w.close()
        super().close()

    def snap(self, marker: str, suggestion: str) -> None:
        """Move marker 'lr_min' or 'lr_steep' to a suggestion of the last lr_find ('valley', 'slide', ...)."""
        if marker not in NAMES:
            raise ValueError(f"marker must be one of {NAMES}, got {marker!r}")
        v = None if self.result is None else self.result.suggestions.get(suggestion)
        if v is None:
            raise ValueError(f"no {suggestion!r} suggestion from the last lr_find")
        self._note = ""
        setattr(self, marker, v)
        self._say(f"{marker} snapped to {suggestion} ({v:.4g})" + (f"; {self._note}" if self._note else ""))

    # -- traitlets ----------------------------------------------------------------------------------

    @T.validate("lr_min", "lr_steep")
    def _valid_lr(self, proposal: T.Bunch) -> float:
        v = proposal["value"]
        if not (math.isfinite(v) and v > 0):
            raise T.TraitError(f"{proposal['trait'].name} must be a positive finite number, got {v!r}")
        return float(v)

    @T.validate("epochs")
    def _valid_epochs(self, proposal: T.Bunch) -> int:
        v = proposal["value"]
        if isinstance(v, bool) or not 1 <= v <= MAX_EPOCHS:
            raise T.TraitError(f"epochs must be a whole number from 1 to {MAX_EPOCHS:,}, got {v!r}")
        return int(v)

    @T.observe("lr_min", "lr_steep")
    def _on_lr(self, change: T.Bunch) -> None:
        name, v = change["name"], change["new"]
        self._place(name)
        other = "lr_steep" if name == "lr_min" else "lr_min"
        if (v > self.lr_steep) if name == "lr_min" else (v < self.lr_min):
            self._note = (
                f"{other} pushed {'up' if name == 'lr_min' else 'down'} to {v:.4g} with {name}: "
                f"the pair stays an ordered slice (lr_min <= lr_steep)"
            )
            self._say(self._note)
            setattr(self, other, v)

    @T.observe("busy")
    def _on_busy(self, change: T.Bunch) -> None:
        self.find_button.disabled = self.fit_button.disabled = change["new"]
        self.stop_button.disabled = not change["new"]

    @T.observe("status")
    def _on_status(self, change: T.Bunch) -> None:
        self.status_html.value = f"<span style='font-family:monospace'>{html.escape(change['new'])}</span>"

    @T.observe("code")
    def _on_code(self, change: T.Bunch) -> None:
        self.code_html.value = f"<pre style='margin:2px 0'>{html.escape(change['new'])}</pre>"
        self.code_html.layout.display = "" if change["new"] else "none"

    # -- chart and fields ---------------------------------------------------------------------------

    def _say(self, msg: str) -> None:
        self.set_trait("status", msg)

    def _place(self, name: str) -> None:
        """Draw marker `name` at its value (clamped into the chart) and show the value in its field."""
        v = getattr(self, name)
        lo, hi = self.chart_view.lr_range
        self._placing.add(name)
        try:
            self._markers[name].move(min(max(v, lo), hi), v)
            self.texts[name].value = fmt_value(v)
        finally:
            self._placing.discard(name)

    def _from_chart(self, name: str, x: Any) -> None:
        """A marker was dropped at lr `x`: clamp it into the curve's range and take it as the value."""
        try:
            x = float(x)
        except (TypeError, ValueError):
            x = math.nan
        if not (math.isfinite(x) and x > 0):
            self._place(name)
            return
        lo, hi = self.chart_view.lr_range
        v = min(max(x, lo), hi)
        if v != getattr(self, name):
            setattr(self, name, v)
        else:
            self._place(name)

    def _on_handle_x(self, name: str, change: T.Bunch) -> None:
        if name in self._placing:
            return
        x = change["new"]
        self._from_chart(name, x[0] if x is not None and len(x) == 1 else math.nan)

    def _on_drag(self, name: str, _mark: Any, content: dict) -> None:
        x = parse_lr((content.get("point") or {}).get("x"))
        if x is not None:
            lo, hi = self.chart_view.lr_range
            self._markers[name].draw_at(min(max(x, lo), hi), x)

    def _on_drag_end(self, name: str, _mark: Any, content: dict) -> None:
        self._from_chart(name, (content.get("point") or {}).get("x"))

    def _on_text(self, name: str, change: T.Bunch) -> None:
        if name in self._placing:
            return
        text, old = change["new"], getattr(self, name)
        if text.strip() == fmt_value(old):
            return
        v = parse_lr(text)
        if v is None:
            self._place(name)
            self._say(f"refused {name} {text!r}: not a positive finite number; {name} stays {old:.6g}")
            return
        setattr(self, name, v)

    def _on_point_click(self, _mark: Any, content: dict) -> None:
        i = (content.get("data") or {}).get("index")
        keys = self.chart_view.point_keys
        if not isinstance(i, int) or not 0 <= i < len(keys) or self.result is None:
            return
        v = self.result.suggestions[keys[i]]
        d = {n: abs(math.log(v) - math.log(getattr(self, n))) for n in NAMES}
        self.snap("lr_min" if d["lr_min"] <= d["lr_steep"] else "lr_steep", keys[i])

    def _on_snap_menu(self, change: T.Bunch) -> None:
        if change["new"] is None:
            return
        marker, key = change["new"]
        self.snap_menu.value = None
        self.snap(marker, key)

    def _show_find_options(self, kw: dict) -> None:
        for key, box in (("start_lr", self.start_text), ("end_lr", self.end_text)):
            v = parse_lr(kw.get(key))
            if v is not None:
                box.value = f"{v:.6g}"
        if isinstance(kw.get("num_it"), int) and MIN_NUM_IT <= kw["num_it"] <= self.steps_box.max:
            self.steps_box.value = kw["num_it"]

    def _show_result(self, res: LRFindResult, lr_range: tuple[float, float] | None = None) -> None:
        """Draw an lr_find result and offer its suggestions in the snap menu."""
        self.result = res
        self.chart_view.show_result(res, lr_range=lr_range)
        sugg = [(k, v) for k, v in res.suggestions.items() if v is not None]
        self.snap_menu.options = [(SNAP_PROMPT, None)] + [
            (f"{m} → {k} ({v:.3g})", (m, k)) for m in NAMES for k, v in sugg
        ]
        for n in NAMES:
            self._place(n)

    def _markers_to_suggestions(self, res: LRFindResult) -> str:
        """Put the markers on the suggestions (lower one on lr_min); say what was done."""
        s, notes = res.suggestions, []

        def pick(name: str, order: tuple[str, ...]) -> float | None:
            for k in order:
                if s.get(k) is not None:
                    if k != name:
                        why = res.reasons.get(name, "none")
                        notes.append(f"no {name} suggestion ({why}): {name} takes {k}")
                    return s[k]
            return None

        lo = pick("lr_min", ("lr_min", "valley", "slide", "lr_steep"))
        hi = pick("lr_steep", ("lr_steep", "valley", "slide", "lr_min"))
        if lo is None or hi is None:
            reasons = "; ".join(dict.fromkeys(res.reasons.values()))
            return f"markers not moved: no suggestion from this curve ({reasons})"
        if lo > hi:
            notes.append(
                f"the suggestions came out reversed (lr_min {lo:.3g} > lr_steep {hi:.3g}): swapped so that "
                "lr_min <= lr_steep"
            )
            lo, hi = hi, lo
        if lo > self.lr_steep:
            self.lr_steep, self.lr_min = hi, lo
        else:
            self.lr_min, self.lr_steep = lo, hi
        return f"markers at lr_min={lo:.4g}, lr_steep={hi:.4g}" + "".join(f"; {n}" for n in notes)

    # -- the worker ---------------------------------------------------------------------------------

    def _start(self, kind: str, call: Callable[[], Any], code: str, done: Callable[[Any], None]) -> bool:
        with self._lock:
            if self.busy:
                return False
            if getattr(self.learn, "busy", False):
                self._say(
                    f"the learner is busy with another run (another widget or a cell), so {kind} did not "
                    "start: wait for it to end, or stop it"
                )
                return False
            self.set_trait("busy", True)
        self._kind, self._error, self._stopping = kind, None, False
        self.error_box.layout.display = "none"
        self.set_trait("code", code)
        self._say(f"{kind} running: {code}")
        if self._watcher not in self.learn.observers:
            self.learn.observers.append(self._watcher)
        self._thread = threading.Thread(target=self._work, args=(call, done), daemon=True, name=f"lrwidget-{kind}")
        self._thread.start()
        return True

    def _work(self, call: Callable[[], Any], done: Callable[[Any], None]) -> None:
        try:
            done(call())
        except BaseException as e:
            self._error = e
            self._show_error(e, traceback.format_exc())
        finally:
            if self._watcher in self.learn.observers:
                self.learn.observers.remove(self._watcher)
            self.set_trait("busy", False)

    def _show_error(self, e: BaseException, tb: str) -> None:
        msg = f"{type(e).__name__}: {e}"
        self._say(f"error: {msg}")
        self.error_html.value = f"<div style='color:#b00020'><b>error in {self._kind}</b>: {html.escape(msg)}</div>"
        self.traceback_html.value = f"<pre style='font-size:11px'>{html.escape(tb)}</pre>"
        self.traceback_box.selected_index = None
        self.error_box.layout.display = ""

    def _after_find(self, res: LRFindResult) -> None:
        steps, stopped = len(res.lrs), res.end_reason == "stopped"
        self._show_result(res, self._find_range if stopped else None)
        note = getattr(self.learn, "note", "")  # what a fastai Learner cannot tell
        note = f"; {note}" if note else ""
        if stopped:
            restored = getattr(self.learn, "lr_find_restores", "the model, optimizer and random state are as before it")
            self._say(f"lr_find stopped after {steps} steps; {restored}; markers not moved{note}")
        else:
            self._say(f"lr_find done ({steps} steps, {res.end_reason}): " + self._markers_to_suggestions(res) + note)

    def _after_fit(self, _: Any) -> None:
        run, rec = self.learn.run, self.learn.recorder
        if run.end_reason == "stopped":
            where = (
                f"in the last validation, after all {run.total} batches trained (that epoch has no validation row)"
                if rec.n_batches >= run.total
                else f"after {rec.n_batches}/{run.total} batches"
            )
            done = len(rec.values)
            self._say(f"fit stopped {where}; {done} full epoch{'s' * (done != 1)}; the weights keep the training done")
            return
        last = ""
        if rec.values:
            last = " · " + ", ".join(f"{n} {v:.4f}" for n, v in zip(rec.metric_names[1:-1], rec.values[-1]))
        self._say(f"fit done: {len(rec.values)} epochs in {fmt_time(run.elapsed)}{last}")

    # -- called on the training thread by _Watcher ----------------------------------------------------

    def _on_run_start(self, learn: Learner) -> None:
        if self._stopping:
            learn.stop()
        run = learn.run
        with self.progress.hold_sync():
            self.progress.max, self.progress.value = max(run.total, 1), 0
        self.progress_box.layout.display = ""
        if run.kind == "fit":
            self._table_rows = 0
            self.table_html.value = epoch_table(learn.recorder.metric_names, [], [])
            self.train_box.layout.display = ""
            if self._train_charts not in self.train_box.children:
                self.train_box.children = (self.table_html, self._train_charts)
        self._redraw(learn)

    def _redraw(self, learn: Learner, final: bool = False) -> None:
        self._redraws += 1
        run, rec = learn.run, learn.recorder
        k = rec.n_batches
        self.progress.value = min(k, self.progress.max)
        elapsed = run.elapsed
        left = 0.0 if final else elapsed / k * (run.total - k) if k else math.nan
        where = (
            f"epoch {min(run.epoch + 1, run.n_epoch)}/{run.n_epoch} · batch {k}/{run.total}"
            if run.kind == "fit"
            else f"step {k}/{run.total}"
        )
        end = f" · {run.end_reason}" if final and run.end_reason else ""
        self.progress_label.value = f"{run.kind} · {where} · {fmt_time(elapsed)} elapsed · {fmt_time(left)} left{end}"
        if run.kind == "fit":
            self.loss_chart.update(rec)
            self.sched_chart.update(rec)
            if len(rec.values) != self._table_rows:
                self._table_rows = len(rec.values)
                self.table_html.value = epoch_table(rec.metric_names, rec.values, rec.times)
                if not final:
                    self._say(f"fit running: {len(rec.values)}/{run.n_epoch} epochs done")
        elif k:
            self.chart_view.show_curve(rec.lrs, rec.losses, rec.raw_losses, self._find_range)
