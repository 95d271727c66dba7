"""The widget's view: the chart, fields, buttons, status, error box and training panel, and how each is shown."""

from __future__ import annotations

import functools
import html
import math
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import traitlets as T

from ..core.learner import MIN_NUM_IT
from . import charts as plots
from .charts import fmt_time
from .colab import enable_colab_widgets
from .runs_panel import RunsPanel

NAMES = ("lr_min", "lr_steep")
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


def epoch_table(names: list[str], values: list[list[float]], times: list[float]) -> str:
    """The per-epoch results as an HTML table (fastai's columns: epoch, losses, metrics, time), in a box about
    10 rows high that scrolls, its header kept in view and its scroll at the newest (last) row."""
    shown, row_px = 10, 22  # rows in view; a row's height (line height and padding)
    cell = "padding:2px 10px;text-align:right"
    th = f"style='{cell};position:sticky;top:0;background:var(--jp-layout-color0, #fff)'"
    head = "".join(f"<th {th}>{html.escape(n)}</th>" for n in names)
    rows = []
    for i, (vals, t) in enumerate(zip(values, times)):
        cells = [str(i), *(f"{v:.6f}" if math.isfinite(v) else "—" for v in vals), fmt_time(t)]
        rows.append("<tr>" + "".join(f"<td style='{cell}'>{c}</td>" for c in cells) + "</tr>")
    # column-reverse: browsers keep such a box scrolled to its end, the newest row, as rows are added
    box = (
        f"max-height:{(shown + 1) * row_px}px;overflow-y:auto;display:flex;flex-direction:column-reverse;"
        "width:max-content;max-width:100%"
    )
    return (
        f"<div class='lrwidget-epochs' style='{box}'>"
        f"<table style='border-collapse:collapse;font-family:monospace;line-height:{row_px - 4}px'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def error_text(e: BaseException) -> str:
    """An exception as the user's code raised it, type and message, with the notes it gained (an OOM's hint)."""
    notes = [str(n) for n in getattr(e, "__notes__", ())]
    return " ".join([f"{type(e).__name__}: {e}", *notes])


def widget_tree(root: W.Widget) -> list[W.Widget]:
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


def ui(method: Callable) -> Callable:
    """Run `method` holding the view's lock, so the worker's updates and the kernel's handlers never interleave."""

    @functools.wraps(method)
    def locked(self: View, *args: Any, **kwargs: Any) -> Any:
        with self._ui_lock:
            return method(self, *args, **kwargs)

    return locked


class View(W.VBox):
    """The widget's parts and their layout; the traits shown by them (busy, status, code, epochs)."""

    epochs = T.Int(5, help="epochs for Fit one cycle")
    busy = T.Bool(False, read_only=True, help="True while lr_find or fit runs in the worker thread")
    status = T.Unicode("", read_only=True, help="what happens now, or what just happened")
    code = T.Unicode("", read_only=True, help="the Python call the last run made, values in full precision")

    def __init__(self, epochs: int, **kwargs: Any):
        # before any display, so also for a widget shown inside the user's own box: Colab marks each widget output
        # for its manager as it is published
        enable_colab_widgets()
        self._ui_lock = threading.RLock()
        self.chart_view = plots.LRFindChart()
        self.chart = self.chart_view.figure
        # lr_min <= lr_steep: lr_min's label left of its line, lr_steep's right of its own, apart however close
        self._markers = {
            n: self.chart_view.add_marker(n, MARKER_COLORS[n], side="left" if n == "lr_min" else "right") for n in NAMES
        }
        self.markers = {n: m.handle for n, m in self._markers.items()}
        style = {"description_width": "initial"}
        self.texts = {
            n: W.Text(description=n, continuous_update=False, style=style, layout=W.Layout(width="190px"))
            for n in NAMES
        }
        # the prompt is an option of its own value (a None value would select nothing: an empty box); off until
        # an lr_find result offers suggestions
        self.snap_menu = W.Dropdown(
            options=[(SNAP_PROMPT, SNAP_PROMPT)], value=SNAP_PROMPT, disabled=True, layout=W.Layout(width="300px")
        )
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
        self.from_start_box = W.Checkbox(
            value=False, description="each fit from the same start", indent=False, layout=W.Layout(width="auto")
        )
        self.reset_button = W.Button(
            description="Reset to start",
            icon="undo",
            tooltip="put back the weights, optimizer and random state of the start (the first Fit, or mark_start())",
        )
        self.sweep_button = W.Button(
            description="Sweep",
            icon="sliders",
            tooltip="short fits from the same start at five rates over a decade each side of lr_steep",
        )
        self.runs_panel = RunsPanel()
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
        rows = [
            self.chart,
            W.HBox([self.texts["lr_min"], self.texts["lr_steep"], self.snap_menu]),
            W.HBox([self.find_button, self.start_text, self.end_text, self.steps_box]),
            W.HBox([self.fit_button, self.epochs_box, self.stop_button]),
            W.HBox([self.from_start_box, self.reset_button, self.sweep_button]),
        ]
        rest = [self.status_html, self.error_box, self.progress_box, self.code_html, self.train_box, self.runs_panel]
        super().__init__(children=rows + rest, **kwargs)
        self.epochs = epochs
        W.link((self, "epochs"), (self.epochs_box, "value"))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        enable_colab_widgets()  # at the first display too: google.colab may be imported after the widget was made
        return super()._repr_mimebundle_(**kwargs)

    @T.validate("epochs")
    def _valid_epochs(self, proposal: T.Bunch) -> int:
        v = proposal["value"]
        if isinstance(v, bool) or not 1 <= v <= MAX_EPOCHS:
            raise T.TraitError(f"epochs must be a whole number from 1 to {MAX_EPOCHS:,}, got {v!r}")
        return int(v)

    @T.observe("busy")
    def _on_busy(self, change: T.Bunch) -> None:
        for b in (self.find_button, self.fit_button, self.reset_button, self.sweep_button):
            b.disabled = change["new"]
        self.stop_button.disabled = not change["new"]

    @T.observe("status")
    def _on_status(self, change: T.Bunch) -> None:
        self.status_html.value = f"<span style='font-family:monospace'>{html.escape(change['new'])}</span>"

    @T.observe("code")
    def _on_code(self, change: T.Bunch) -> None:
        self.code_html.value = f"<pre style='margin:2px 0'>{html.escape(change['new'])}</pre>"
        self.code_html.layout.display = "" if change["new"] else "none"

    @ui
    def _say(self, msg: str) -> None:
        self.set_trait("status", msg)

    @ui
    def _show_error(self, kind: str, e: BaseException, tb: str) -> None:
        """Show the worker's error as the user's code raised it, with the traceback on demand."""
        msg = error_text(e)
        self._say(f"error: {msg}")
        self.error_html.value = f"<div style='color:#b00020'><b>error in {kind}</b>: {html.escape(msg)}</div>"
        self.traceback_html.value = f"<pre style='font-size:11px'>{html.escape(tb)}</pre>"
        self.traceback_box.selected_index = None
        self.error_box.layout.display = ""

    def _hide_error(self) -> None:
        self.error_box.layout.display = "none"

    def _show_training(self, metric_names: list[str]) -> None:
        """Open the training panel with an empty epoch table; the charts join it the first time."""
        self.table_html.value = epoch_table(metric_names, [], [])
        self.train_box.layout.display = ""
        if self._train_charts not in self.train_box.children:
            self.train_box.children = (self.table_html, self._train_charts)

    def _show_progress(self, total: int) -> None:
        with self.progress.hold_sync():
            self.progress.max, self.progress.value = max(total, 1), 0
        self.progress_box.layout.display = ""
