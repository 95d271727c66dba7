"""The buttons and fields: Find LR with its range and repeats, Fit one cycle with its epochs, Stop, the same start,
Sweep, Search with its budget."""

from __future__ import annotations

from typing import Any

import ipywidgets as W

from ..core.checks import is_real
from ..core.learner import MIN_NUM_IT
from .formats import parse_lr

MAX_EPOCHS = 1_000_000
MAX_REPEATS = 50
DEFAULT_BUDGET = 1.5  # Search's budget: its probes' training batches, in fits of `epochs`


class Controls:
    """The widget's buttons and the fields beside them; `set_busy` turns them off and Stop on while a run goes."""

    def __init__(self, epochs: int):
        style = {"description_width": "initial"}
        self.find_button = W.Button(
            description="Find LR", icon="search", tooltip="run learn.lr_find() in the background"
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
        self.repeats_box = W.BoundedIntText(
            value=1,
            min=1,
            max=MAX_REPEATS,
            description="repeats",
            tooltip="range tests from the same state, each with its own batch order: the curve is their median",
            style=style,
            layout=W.Layout(width="150px"),
        )
        self.fit_button = W.Button(
            description="Fit one cycle",
            icon="play",
            tooltip="learn.fit_one_cycle(epochs, lr_max=slice(lr_min, lr_steep))",
        )
        self.epochs_box = W.BoundedIntText(
            value=epochs, min=1, max=MAX_EPOCHS, description="epochs", style=style, layout=W.Layout(width="150px")
        )
        self.stop_button = W.Button(
            description="Stop",
            icon="stop",
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
        self.search_button = W.Button(
            description="Search",
            icon="binoculars",
            tooltip="learn.lr_search(epochs, budget=...): short fits from the same start at rates over the curve",
        )
        self.budget_text = W.Text(
            value=f"{DEFAULT_BUDGET}",
            description="budget",
            tooltip="the probes' training batches, in fits of `epochs` (1.5: one and a half fits)",
            continuous_update=False,
            style=style,
            layout=W.Layout(width="150px"),
        )
        # white on colours of >= 5.3:1 (style.BUTTONS); ipywidgets' info and success styles give 3.5:1 and 4.1:1
        for b, cls in ((self.find_button, "lrw-find"), (self.fit_button, "lrw-fit"), (self.stop_button, "lrw-stop")):
            b.add_class(cls)

    def set_busy(self, busy: bool) -> None:
        """While a run goes: every button off but Stop."""
        for b in (self.find_button, self.fit_button, self.reset_button, self.sweep_button, self.search_button):
            b.disabled = busy
        self.stop_button.disabled = not busy

    def find_args(self, given: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """lr_find's start, end and steps from the fields, for those `given` lacks; or a refusal to say."""
        kw: dict[str, Any] = {}
        for key, box in (("start_lr", self.start_text), ("end_lr", self.end_text)):
            if key not in given:
                v = parse_lr(box.value)
                if v is None:
                    return {}, f"refused {key} {box.value!r}: not a positive finite number; lr_find not started"
                kw[key] = v
        if "num_it" not in given:
            kw["num_it"] = int(self.steps_box.value)
        if "repeats" not in given and self.repeats_box.value > 1:  # one range test: the call as before
            kw["repeats"] = int(self.repeats_box.value)
        return kw, ""

    def budget(self, given: Any = None) -> tuple[float | None, str]:
        """Search's budget: `given` (ValueError if it is not a positive finite number, which then shows in the field),
        else the field's; or a refusal to say for a field that is not a number."""
        if given is not None:
            v = parse_lr(given) if is_real(given) else None
            if v is None:
                raise ValueError(f"budget must be a positive finite number of fits, got {given!r}")
            self.budget_text.value = f"{v:g}"
            return v, ""
        v = parse_lr(self.budget_text.value)
        if v is None:
            return None, f"refused budget {self.budget_text.value!r}: not a positive finite number; search not started"
        return v, ""

    def show_find_args(self, kw: dict[str, Any]) -> None:
        """Show lr_find's range and steps in the fields (the next click runs the same)."""
        for key, box in (("start_lr", self.start_text), ("end_lr", self.end_text)):
            v = parse_lr(kw.get(key))
            if v is not None:
                box.value = f"{v:.6g}"
        if isinstance(kw.get("num_it"), int) and self.steps_box.min <= kw["num_it"] <= self.steps_box.max:
            self.steps_box.value = kw["num_it"]
        r = kw.get("repeats", 1)
        if isinstance(r, int) and not isinstance(r, bool) and self.repeats_box.min <= r <= self.repeats_box.max:
            self.repeats_box.value = r
