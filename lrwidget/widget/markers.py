"""The lr_min and lr_steep markers: their traits, their handles on the lr_find chart, their fields and the snap menu.

The two values stay an ordered slice (lr_min <= lr_steep); a drag, a typed value, a click on a suggestion point or the
snap menu sets them; setting them moves the handles and the fields.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import bqplot as bq
import ipywidgets as W
import traitlets as T

from ..core.find_result import LRFindResult
from .find_chart import LRFindChart, Marker
from .formats import fmt_value, parse_lr
from .layout import ui
from .style import var

NAMES = ("lr_min", "lr_steep")
DEFAULT_LRS = (1e-4, 1e-2)
SNAP_PROMPT = "snap a marker to a suggestion…"
MARKER_COLORS = {n: var(n) for n in NAMES}


class LearningRate(T.Float):
    """A positive finite float trait that also takes numpy numbers and 0-d tensors or arrays, and refuses bools."""

    def validate(self, obj: Any, value: Any) -> float:
        if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.error(obj, value)
        v = float(value)
        if not (math.isfinite(v) and v > 0):
            raise T.TraitError(f"{self.name} must be a positive finite number, got {value!r}")
        return super().validate(obj, v)


class Markers(T.HasTraits):
    """Two draggable markers on `chart`, two-way bound to `lr_min` and `lr_steep`; `say(text)` reports to the status.

    `markers[name]` is the handle (a bqplot Scatter of one point) the mouse drags; `texts[name]` the value's field."""

    lr_min = LearningRate(DEFAULT_LRS[0], help="lower end of the slice passed to fit_one_cycle (marker lr_min)")
    lr_steep = LearningRate(DEFAULT_LRS[1], help="upper end of the slice passed to fit_one_cycle (marker lr_steep)")

    def __init__(self, chart: LRFindChart, lock: threading.RLock, say: Callable[[str], None]):
        super().__init__()
        self._ui_lock, self.chart, self.say = lock, chart, say
        self.result: LRFindResult | None = None  # the lr_find whose suggestions the snap menu offers
        self._placing: set[str] = set()
        self._note = ""  # how the last change pushed the other marker along ('' if it did not)
        self._depth = 0  # trait changes under way (a push is a change inside a change)
        self._quiet = 0  # > 0: the caller says what it did (a snap, a run's rates, lr_find's suggestions)
        self.on_chart: dict[str, Marker] = {n: chart.add_marker(n, MARKER_COLORS[n]) for n in NAMES}
        self.handles: dict[str, bq.Scatter] = {n: m.handle for n, m in self.on_chart.items()}
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
        for n in NAMES:
            self.handles[n].observe(partial(self._on_handle_x, n), names="x")
            self.handles[n].on_drag(partial(self._on_drag, n))
            self.handles[n].on_drag_end(partial(self._on_drag_end, n))
            self.texts[n].observe(partial(self._on_text, n), names="value")
            self._place(n)
        chart.points.on_element_click(self._on_point_click)
        self.snap_menu.observe(self._on_snap_menu, names="value")

    def __getitem__(self, name: str) -> bq.Scatter:
        """The handle of marker `name`."""
        return self.handles[name]

    # -- what the widget asks of its markers ----------------------------------------------------------------------

    @ui
    def snap(self, marker: str, suggestion: str) -> None:
        """Move marker 'lr_min' or 'lr_steep' to a suggestion of the last lr_find ('valley', 'slide', ...)."""
        if marker not in NAMES:
            raise ValueError(f"marker must be one of {NAMES}, got {marker!r}")
        v = None if self.result is None else self.result.suggestions.get(suggestion)
        if v is None:
            raise ValueError(f"no {suggestion!r} suggestion from the last lr_find")
        with self.quiet():
            setattr(self, marker, v)
        self.say(f"{marker} snapped to {suggestion} ({v:.4g}); {self.describe()}")

    @ui
    def put(self, lo: float, hi: float) -> None:
        """Both markers at once, in the order that keeps them an ordered slice on the way; the caller says it."""
        with self.quiet():
            if lo > self.lr_steep:
                self.lr_steep, self.lr_min = hi, lo
            else:
                self.lr_min, self.lr_steep = lo, hi

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Changes that do not rewrite the status: the caller says what it did."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def sitting_on(self) -> list[str]:
        """The suggestions of the last lr_find the markers sit on (lr_min's first)."""
        sugg = {} if self.result is None else {k: v for k, v in self.result.suggestions.items() if v is not None}
        on = []
        for n in NAMES:
            v = getattr(self, n)
            k = n if sugg.get(n) == v else next((k for k, s in sugg.items() if s == v), None)
            if k is not None:
                on.append(k)
        return on

    def describe(self) -> str:
        """The markers as they are now: values, the suggestions they sit on, beyond the chart, pushed together."""
        lo, hi = self.chart.lr_range
        said = [f"markers at lr_min={self.lr_min:.4g}, lr_steep={self.lr_steep:.4g}"]
        sugg = {} if self.result is None else {k: v for k, v in self.result.suggestions.items() if v is not None}
        for n in NAMES:
            v = getattr(self, n)
            k = n if sugg.get(n) == v else next((k for k, s in sugg.items() if s == v), None)
            if k is not None:
                said.append(f"{n} is lr_find's {'suggestion' if k == n else k}")
            if v > hi or v < lo:
                end = f"right end ({hi:.3g})" if v > hi else f"left end ({lo:.3g})"
                said.append(f"{n} is beyond the chart's {end}")
        if self._note and self.lr_min == self.lr_steep:
            said.append(self._note)
        return "; ".join(said)

    @ui
    def show_result(self, res: LRFindResult, lr_range: tuple[float, float] | None = None) -> None:
        """Draw an lr_find result and offer its suggestions in the snap menu."""
        self.result = res
        self.chart.show_result(res, lr_range=lr_range)
        sugg = [(k, v) for k, v in res.suggestions.items() if v is not None]
        menu = [(f"{m} → {k} ({v:.3g})", (m, k)) for m in NAMES for k, v in sugg]
        with self.snap_menu.hold_sync():
            self.snap_menu.options = [(SNAP_PROMPT, SNAP_PROMPT), *menu]
            self.snap_menu.value, self.snap_menu.disabled = SNAP_PROMPT, not menu
        for n in NAMES:
            self._place(n)

    @ui
    def to_suggestions(self, res: LRFindResult) -> str:
        """Put the markers on the suggestions (lower one on lr_min); say what was done."""
        s, notes = res.suggestions, []

        def pick(name: str, order: tuple[str, ...]) -> float | None:
            for k in order:
                if s.get(k) is not None:
                    if k != name:
                        notes.append(f"no {name} suggestion ({res.reasons.get(name, 'none')}): {name} takes {k}")
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
        self.put(lo, hi)
        return f"markers at lr_min={lo:.4g}, lr_steep={hi:.4g}" + "".join(f"; {n}" for n in notes)

    # -- the traits, and what the browser sends -------------------------------------------------------------------

    @T.observe("lr_min", "lr_steep")
    @ui
    def _on_lr(self, change: T.Bunch) -> None:
        name, v = change["name"], change["new"]
        if self._depth == 0:
            self._note = ""
        self._depth += 1
        try:
            self._place(name)
            other = "lr_steep" if name == "lr_min" else "lr_min"
            if (v > self.lr_steep) if name == "lr_min" else (v < self.lr_min):
                self._note = (
                    f"{other} pushed {'up' if name == 'lr_min' else 'down'} to {v:.4g} with {name}: the pair stays an "
                    "ordered slice (lr_min <= lr_steep)"
                )
                setattr(self, other, v)
        finally:
            self._depth -= 1
        if self._depth == 0 and not self._quiet:  # the status says the markers as they are now, not as they were
            self.say(self.describe())

    def _place(self, name: str) -> None:
        """Draw marker `name` at its value (clamped into the chart) and show the value in its field."""
        v = getattr(self, name)
        self._placing.add(name)
        try:
            self.on_chart[name].move(v)
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
        lo, hi = self.chart.lr_range
        v = min(max(x, lo), hi)
        if v != getattr(self, name):
            setattr(self, name, v)
        else:
            self._place(name)

    @ui
    def _on_handle_x(self, name: str, change: T.Bunch) -> None:
        if name in self._placing:
            return
        x = change["new"]
        self._from_chart(name, x[0] if x is not None and len(x) == 1 else math.nan)

    @ui
    def _on_drag(self, name: str, _mark: Any, content: dict) -> None:
        x = parse_lr((content.get("point") or {}).get("x"))
        if x is not None:
            self.on_chart[name].draw_at(self.on_chart[name].clamp(x))

    @ui
    def _on_drag_end(self, name: str, _mark: Any, content: dict) -> None:
        self._from_chart(name, (content.get("point") or {}).get("x"))

    @ui
    def _on_text(self, name: str, change: T.Bunch) -> None:
        if name in self._placing:
            return
        text, old = change["new"], getattr(self, name)
        if text.strip() == fmt_value(old):
            return
        v = parse_lr(text)
        if v is None:
            self._place(name)
            self.say(f"refused {name} {text!r}: not a positive finite number; {name} stays {old:.6g}")
            return
        setattr(self, name, v)

    @ui
    def _on_point_click(self, _mark: Any, content: dict) -> None:
        i = (content.get("data") or {}).get("index")
        keys = self.chart.point_keys
        if not isinstance(i, int) or not 0 <= i < len(keys) or self.result is None:
            return
        v = self.result.suggestions[keys[i]]
        d = {n: abs(math.log(v) - math.log(getattr(self, n))) for n in NAMES}
        self.snap("lr_min" if d["lr_min"] <= d["lr_steep"] else "lr_steep", keys[i])

    @ui
    def _on_snap_menu(self, change: T.Bunch) -> None:
        if not isinstance(change["new"], tuple):  # the prompt, put back after each snap
            return
        marker, key = change["new"]
        self.snap_menu.value = SNAP_PROMPT
        self.snap(marker, key)
