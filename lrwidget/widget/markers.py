"""The lr_min and lr_steep markers bound to their traits and fields: drag, type, click a suggestion, snap."""

from __future__ import annotations

import math
import numbers
from functools import partial
from typing import Any

import traitlets as T

from ..core.find_result import LRFindResult
from .layout import NAMES, SNAP_PROMPT, View, fmt_value, parse_lr, ui

DEFAULT_LRS = (1e-4, 1e-2)


class LearningRate(T.Float):
    """A float trait that also takes numpy numbers and 0-d tensors or arrays, and refuses bools."""

    def validate(self, obj: Any, value: Any) -> float:
        if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.error(obj, value)
        return super().validate(obj, float(value))


class Markers(View):
    """The view with its two markers two-way bound to `lr_min` and `lr_steep`, which stay an ordered slice."""

    lr_min = LearningRate(DEFAULT_LRS[0], help="lower end of the slice passed to fit_one_cycle (marker lr_min)")
    lr_steep = LearningRate(DEFAULT_LRS[1], help="upper end of the slice passed to fit_one_cycle (marker lr_steep)")

    def __init__(self, epochs: int, **kwargs: Any):
        self._placing: set[str] = set()
        self._note = ""
        self.result: LRFindResult | None = None
        super().__init__(epochs, **kwargs)
        for n in NAMES:
            self.markers[n].observe(partial(self._on_handle_x, n), names="x")
            self.markers[n].on_drag(partial(self._on_drag, n))
            self.markers[n].on_drag_end(partial(self._on_drag_end, n))
            self.texts[n].observe(partial(self._on_text, n), names="value")
            self._place(n)
        self.chart_view.points.on_element_click(self._on_point_click)
        self.snap_menu.observe(self._on_snap_menu, names="value")

    @ui
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

    @T.validate("lr_min", "lr_steep")
    def _valid_lr(self, proposal: T.Bunch) -> float:
        v = proposal["value"]
        if not (math.isfinite(v) and v > 0):
            raise T.TraitError(f"{proposal['trait'].name} must be a positive finite number, got {v!r}")
        return float(v)

    @T.observe("lr_min", "lr_steep")
    @ui
    def _on_lr(self, change: T.Bunch) -> None:
        name, v = change["name"], change["new"]
        self._place(name)
        other = "lr_steep" if name == "lr_min" else "lr_min"
        if (v > self.lr_steep) if name == "lr_min" else (v < self.lr_min):
            self._note = (
                f"{other} pushed {'up' if name == 'lr_min' else 'down'} to {v:.4g} with {name}: the pair stays an "
                "ordered slice (lr_min <= lr_steep)"
            )
            self._say(self._note)
            setattr(self, other, v)

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
            lo, hi = self.chart_view.lr_range
            self._markers[name].draw_at(min(max(x, lo), hi), x)

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
            self._say(f"refused {name} {text!r}: not a positive finite number; {name} stays {old:.6g}")
            return
        setattr(self, name, v)

    @ui
    def _on_point_click(self, _mark: Any, content: dict) -> None:
        i = (content.get("data") or {}).get("index")
        keys = self.chart_view.point_keys
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

    @ui
    def _show_result(self, res: LRFindResult, lr_range: tuple[float, float] | None = None) -> None:
        """Draw an lr_find result and offer its suggestions in the snap menu."""
        self.result = res
        self.chart_view.show_result(res, lr_range=lr_range)
        sugg = [(k, v) for k, v in res.suggestions.items() if v is not None]
        menu = [(f"{m} → {k} ({v:.3g})", (m, k)) for m in NAMES for k, v in sugg]
        with self.snap_menu.hold_sync():
            self.snap_menu.options = [(SNAP_PROMPT, SNAP_PROMPT), *menu]
            self.snap_menu.value, self.snap_menu.disabled = SNAP_PROMPT, not menu
        for n in NAMES:
            self._place(n)

    @ui
    def _markers_to_suggestions(self, res: LRFindResult) -> str:
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
        self._put_markers(lo, hi)
        return f"markers at lr_min={lo:.4g}, lr_steep={hi:.4g}" + "".join(f"; {n}" for n in notes)

    @ui
    def _put_markers(self, lo: float, hi: float) -> None:
        """Both markers at once, in the order that keeps them an ordered slice on the way."""
        if lo > self.lr_steep:
            self.lr_steep, self.lr_min = hi, lo
        else:
            self.lr_min, self.lr_steep = lo, hi
