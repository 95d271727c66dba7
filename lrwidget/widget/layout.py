"""How the parts are arranged in the widget, the lock their updates share, and the tree of widgets they make."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import ipywidgets as W


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


def arrange(chart: W.Widget, markers: Any, controls: Any, messages: Any, training: Any, panel: W.Widget) -> list:
    """The widget's rows, top to bottom: the lr_find chart, the markers' fields, the buttons, the messages, the
    training view and the runs panel."""
    c = controls
    return [
        chart,
        W.HBox([markers.texts["lr_min"], markers.texts["lr_steep"], markers.snap_menu]),
        W.HBox([c.find_button, c.start_text, c.end_text, c.steps_box]),
        W.HBox([c.fit_button, c.epochs_box, c.stop_button]),
        W.HBox([c.from_start_box, c.reset_button, c.sweep_button]),
        messages.status_html,
        messages.error_box,
        training.progress_box,
        messages.code_html,
        training.train_box,
        panel,
    ]
