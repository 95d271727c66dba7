"""How much the rate matters: the outcome of runs of the same length from the same start against their rate.

The learning-rate sensitivity curve (Wortsman et al. 2023) of this model on this data: each run's final validation
loss (training loss without validation) against its rate on a log axis, for one group of runs that can be compared (a
sweep's, a search's sweep probes or its long ones, fits from the start), with the lr_find suggestions as dashed
rules and the picks as solid ones (a search's best for its own probes; for other runs their best run, and the best
of the search for fits of their length from their start, if there was one). A run that diverged leaves through
the top edge, where an arrow with its number marks it, as on the runs chart. The group drawn is the one picked in the
menu, else the largest; the heading says which.
"""

from __future__ import annotations

import html
import math
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np

from ..core.find_result import LRFindResult
from ..core.search import LRSearchResult
from .formats import fmt_lr, fmt_num
from .plotting import Axis, data_range, figure, set_traits
from .runs import Run, best_of, called, groups, outcome
from .runs_panel import rate_colors
from .style import var

TITLE = "outcome against the rate"
SUGGESTIONS = ("lr_min", "lr_steep", "valley", "slide")
LABEL_Y, LABEL_STEP = 0.94, 0.08  # the rules' labels, in the plot's 0..1, one row each
PAD_DECADES = 0.15  # the lr axis beyond the outermost rate, rule or pick


def lr_range(xs: list[float]) -> tuple[float, float]:
    """A log axis over the positive finite `xs`, PAD_DECADES beyond them (1e-4..1e-1 for none)."""
    ok = [x for x in xs if math.isfinite(x) and x > 0]
    if not ok:
        return 1e-4, 1e-1
    pad = 10**PAD_DECADES
    return min(ok) / pad, max(ok) * pad


def group_of(runs: list[Run], picked: tuple | None) -> list[int]:
    """The group to draw: the one `picked` (a Run.group) while it has two outcomes, else the largest (the most recent
    of equal size); [] when there is none."""
    found = groups(runs)
    for m in found:
        if runs[m[0]].group == picked:
            return m
    return max(reversed(found), key=len) if found else []


def search_of(runs: list[Run], members: list[int]) -> int:
    """The widget's search whose probes the group holds (0: none, or runs loaded from another kernel's file)."""
    numbers = {runs[j].search for j in members}
    if len(numbers) == 1 and not any(runs[j].loaded for j in members):
        return numbers.pop()
    return 0


def search_for(runs: list[Run], members: list[int], searches: list[LRSearchResult]) -> LRSearchResult | None:
    """The last search of this kernel for fits like the group's (plain runs of its epochs from its start), or None."""
    first = runs[members[0]]
    if first.search or first.loaded:
        return None
    for k in range(len(searches), 0, -1):
        began = {r.start for r in runs if r.search == k and not r.loaded}
        if searches[k - 1].epochs == first.epochs and began == {first.start}:
            return searches[k - 1]
    return None


class SensitivityChart:
    """Outcome against lr on a log axis for one group of runs, with lr_find's suggestions and the picks as rules."""

    def __init__(self) -> None:
        self.sx, self.sy = bq.LogScale(min=1e-4, max=1e-1), bq.LinearScale(min=0.0, max=1.0)
        top = bq.LinearScale(min=0.0, max=1.0)  # the plot's height: rules, their labels, the diverged runs' arrows
        sc, tc = {"x": self.sx, "y": self.sy}, {"x": self.sx, "y": top}
        self.start = bq.Lines(x=[], y=[], scales=sc, colors=[var("earlier")], line_style="dotted", stroke_width=1.5)
        self.rules = bq.Lines(x=[], y=[], scales=tc, line_style="dashed", stroke_width=1.5)
        self.pick = bq.Lines(x=[], y=[], scales=tc, colors=[var("good")], stroke_width=2.5)
        # a label per rule, each on its own row and on the side of its rule toward the middle (never cut at an end)
        self.labels = [bq.Label(x=[], y=[], text=[], scales=tc, default_size=12) for _ in range(len(SUGGESTIONS) + 2)]
        self.line = bq.Lines(x=[], y=[], scales=sc, colors=[var("curve")], stroke_width=1.5)
        self.points = bq.Scatter(
            x=[],
            y=[],
            names=[],
            display_names=False,
            scales=sc,
            default_size=64,
            stroke="var(--lrw-fg, #333)",
            tooltip=bq.Tooltip(fields=["name"], labels=["run"]),
        )
        self.off = bq.Scatter(
            x=[],
            y=[],
            names=[],
            display_names=True,
            scales=tc,
            marker="triangle-up",
            default_size=70,
            stroke="var(--lrw-fg, #333)",
            tooltip=bq.Tooltip(fields=["name"], labels=["diverged"]),
        )
        self.x_axis = Axis(self.sx, "learning rate (log scale)", n=6)
        self.y_axis = Axis(self.sy, "loss at the end", side="left", n=4)
        marks = [self.start, self.rules, self.pick, *self.labels, self.line, self.points, self.off]
        self.figure = figure(marks, [self.x_axis.axis, self.y_axis.axis], TITLE, "300px")

    def update(
        self,
        runs: list[Run],
        members: list[int],
        suggestions: dict[str, float | None],
        picks: list[tuple[float, str]],
        start_loss: float = math.nan,
    ) -> None:
        """Draw `members` of `runs` by rate, the `suggestions` (name: lr), the `picks` (lr, its label; two at most) and
        the loss at the start (a search's, dotted; nan: none)."""
        picks = picks[:2]
        kept = sorted((runs[j].lr_steep, outcome(runs[j]), j) for j in members if not runs[j].diverged)
        kept = [(x, y, j) for x, y, j in kept if math.isfinite(y)]
        off = [(runs[j].lr_steep, j) for j in members if runs[j].diverged]
        rules = [(k, float(v)) for k, v in suggestions.items() if k in SUGGESTIONS and v is not None]
        xs = [x for x, _, _ in kept] + [x for x, _ in off] + [v for _, v in rules] + [v for v, _ in picks]
        lo, hi = lr_range(xs)
        ys = [y for _, y, _ in kept] + ([start_loss] if math.isfinite(start_loss) else [])
        ylo, yhi = data_range(np.array(ys, dtype=float), pad=0.08)
        # one label per rule (the picks' last), each row lower, on the side of its rule toward the middle
        said = [(v, f"{k} {fmt_lr(v)}", var(k)) for k, v in rules] + [(v, t, var("good")) for v, t in picks]
        middle = math.sqrt(lo * hi)
        with self.figure.hold_sync():
            self.x_axis.show(lo, hi)
            self.y_axis.show(ylo, yhi)
            px = np.array([x for x, _, _ in kept], dtype=float)
            py = np.array([y for _, y, _ in kept], dtype=float)
            colors = rate_colors([y for _, y, _ in kept]) or [var("curve")]
            names = [f"#{j} lr {fmt_lr(x)}: {fmt_num(y)}" for x, y, j in kept]
            set_traits(self.line, x=px, y=py)
            set_traits(self.points, x=px, y=py, colors=colors, names=np.array(names, dtype=str))
            set_traits(
                self.off,
                x=np.array([x for x, _ in off], dtype=float),
                y=np.full(len(off), 0.97),
                names=np.array([f"#{j}" for _, j in off], dtype=str),
                colors=[var("error")],
            )
            if rules:
                set_traits(
                    self.rules,
                    x=np.array([[v, v] for _, v in rules]),
                    y=np.array([[0.0, 1.0]] * len(rules)),
                    colors=[var(k) for k, _ in rules],
                )
            else:
                set_traits(self.rules, x=np.empty(0), y=np.empty(0))
            if picks:
                set_traits(self.pick, x=np.array([[v, v] for v, _ in picks]), y=np.array([[0.0, 1.0]] * len(picks)))
            else:
                set_traits(self.pick, x=np.empty(0), y=np.empty(0))
            for i, label in enumerate(self.labels):
                if i >= len(said):
                    set_traits(label, x=np.empty(0), y=np.empty(0), text=np.array([], dtype=str))
                    continue
                v, text, color = said[i]
                left = v > middle
                set_traits(
                    label,
                    x=np.array([v]),
                    y=np.array([LABEL_Y - LABEL_STEP * i]),
                    text=np.array([text]),
                    colors=[color],
                    align="end" if left else "start",
                    x_offset=-5 if left else 5,
                )
            if math.isfinite(start_loss):
                set_traits(self.start, x=np.array([lo, hi]), y=np.array([start_loss, start_loss]))
            else:
                set_traits(self.start, x=np.empty(0), y=np.empty(0))


class SensitivityView(W.VBox):
    """The heading that says which runs are drawn, the menu of groups, and the chart; shown once a group has two
    runs. `show(runs, finds, searches)` redraws it."""

    def __init__(self) -> None:
        self.chart = SensitivityChart()
        self.heading = W.HTML()
        self.menu = W.Dropdown(options=[], layout=W.Layout(width="auto", max_width="100%"))
        self.menu.observe(self._on_menu, names="value")
        self.picked: tuple | None = None  # the group chosen in the menu (a Run.group)
        self._groups: dict[str, tuple] = {}  # the menu's labels and the groups they name
        self._args: tuple = ([], [], [])
        self._showing = False  # the menu is being filled: its value changes are not the user's
        super().__init__([self.heading], layout=W.Layout(display="none"))  # the chart joins when first shown

    @property
    def members(self) -> list[int]:
        """The indices of the runs drawn."""
        runs = self._args[0]
        return group_of(runs, self.picked)

    def show(self, runs: list[Run], finds: list[LRFindResult], searches: list[LRSearchResult]) -> None:
        """Draw the picked group (else the largest) of `runs`; the suggestions of its search's lr_find (else of the last
        of `finds`) and the picks: its search's best (`searches[k - 1]` for probes of search k), else its best run and
        the best of the last search for fits of its length from its start."""
        self._args = (runs, finds, searches)
        found = groups(runs)
        members = group_of(runs, self.picked)
        if not members:
            self.layout.display = "none"
            return
        k = search_of(runs, members)
        result = searches[k - 1] if 0 < k <= len(searches) else None
        find = result.find if result is not None else (finds[-1] if finds else None)
        suggestions = dict(find.suggestions) if find is not None else {}
        picks: list[tuple[float, str]] = []
        start = math.nan
        if result is not None:
            picks.append((float(result.best), f"search best {fmt_lr(result.best)}"))
            start = float(result.start_loss)
        else:
            b = best_of(runs, members)
            if b is not None:
                picks.append((runs[b].lr_steep, f"best #{b} {fmt_lr(runs[b].lr_steep)}"))
            s = search_for(runs, members, searches)
            if s is not None and s.end_reason == "completed":
                picks.append((float(s.best), f"search best {fmt_lr(s.best)}"))
        self.chart.update(runs, members, suggestions, picks, start)
        labels = {f"{called(runs, m)} ({len(m)})": runs[m[0]].group for m in reversed(found)}
        current = next(label for label, g in labels.items() if g == runs[members[0]].group)
        self._showing = True
        try:
            if labels != self._groups:
                self.menu.options = list(labels)
                self._groups = labels
            self.menu.value = current
        finally:
            self._showing = False
        judged = "validation loss" if any(math.isfinite(runs[j].valid_loss) for j in members) else "training loss"
        what = f"{called(runs, members)}: {len(members)} runs, {judged} at their end"
        said = "".join(f"; {t}" for _, t in picks)
        said += f"; dotted: the loss at the start, {fmt_num(start)}" if math.isfinite(start) else ""
        self.heading.value = f"<b>how much the rate matters</b>: {html.escape(what + said)}"
        self.chart.y_axis.axis.label = f"{'valid' if judged.startswith('valid') else 'train'} loss at the end"
        self.menu.layout.display = "" if len(labels) > 1 else "none"
        self.layout.display = ""  # shown before the figure joins: one drawn hidden, at zero width, logs SVG errors
        if self.chart.figure not in self.children:
            self.children = (self.heading, self.menu, self.chart.figure)

    def _on_menu(self, change: Any) -> None:
        if self._showing or change["new"] is None:
            return
        self.picked = self._groups.get(change["new"])
        self.show(*self._args)
