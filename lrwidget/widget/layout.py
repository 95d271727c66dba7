"""How the parts are arranged in the widget, the lock their updates share, and the tree of widgets they make."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from . import style


def ui(method: Callable) -> Callable:
    """Run `method` holding its part's lock (`self._ui_lock`, one for all the parts of a widget), so the run's
    updates on its thread and the kernel's handlers never interleave."""

    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._ui_lock:
            return method(self, *args, **kwargs)

    return locked


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


def row(children: list[W.Widget]) -> W.HBox:
    """A row of controls that wraps onto the next line where the output is narrow (none is squeezed or cut)."""
    box = W.HBox(children)
    box.add_class("lrw-row")
    return box


def column(children: list[W.Widget], *classes: str) -> W.VBox:
    """One of the widget's columns: side by side where the output is wide enough, one under the other otherwise."""
    box = W.VBox(children)
    for c in ("lrw-col", *classes):
        box.add_class(c)
    return box


def arrange(chart: W.Widget, markers: Any, controls: Any, messages: Any, training: Any, panel: W.Widget) -> list:
    """The widget's children: its stylesheet, then three columns that wrap (style.CSS): the lr_find chart with the
    markers' fields and the buttons (Search with its budget on a row of its own); what happens (status, error,
    progress, the call, the live training view); the runs panel, with the chart of how much the rate matters. An
    output of about 900 px or less shows them one under the other, 1,400 px two side by side (the runs below), 1,920
    px all three."""
    c = controls
    find = column(
        [
            chart,
            row([markers.texts["lr_min"], markers.texts["lr_steep"], markers.snap_menu]),
            row([c.find_button, c.start_text, c.end_text, c.steps_box, c.repeats_box]),
            row([c.fit_button, c.epochs_box, c.stop_button]),
            row([c.from_start_box, c.reset_button, c.sweep_button]),
            row([c.search_button, c.budget_text]),
        ],
        "lrw-find-col",
    )
    happening = column(
        [messages.status_html, messages.error_box, training.progress_box, messages.code_html, training.train_box],
        "lrw-train-col",
    )
    for c_ in ("lrw-col", "lrw-runs-col"):
        panel.add_class(c_)
    top = W.HBox([find, happening, panel])
    top.add_class("lrw-top")
    return [style.stylesheet(), top]
