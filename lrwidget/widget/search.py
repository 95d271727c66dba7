"""Search: `learn.lr_search(epochs, budget=...)` from the widget, each probe recorded as a run, the markers at its best.

The search runs from the widget's start (taken now if there is none yet, as a sweep does) and the learner ends there.
Each probe is a one-cycle fit as the learner's observers see it (`learn.run.probe` says which of how many, and its
phase; `learn.run.lr_max` its rate): `Probes` records it as a Run of the history when it ends and tells the progress
which probe runs. At the end the markers move to the search's best, lr_min keeping its ratio to lr_steep; a Stop keeps
the probes done and moves nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ..core.events import Observer
from ..core.interface import Driven
from ..core.search import LRSearchResult
from .controls import Controls
from .formats import fmt_lr
from .history import History
from .markers import Markers
from .reports import EARLY_ENDS
from .runs import outcome
from .start import Start
from .training import TrainingView


def search_code(epochs: int, budget: float) -> str:
    """`learn.lr_search(5, budget=1.5)`, values in full precision."""
    return f"learn.lr_search({epochs!r}, budget={budget!r})"


class Probes(Observer):
    """While a search runs: records each probe as a run of `history` when it ends, says which probe runs
    (the live view's `phase`, before the progress) and how each ended (`say(text)`, the status)."""

    def __init__(
        self,
        history: History,
        number: int,
        code: str,
        start: str,
        training: TrainingView,
        say: Callable[[str], None],
    ):
        self.history, self.number, self.code, self.start, self.training = history, number, code, start, training
        self.say = say
        self.first = len(history.runs)  # the run number of its first probe
        self.planned = 0  # probes the search plans, as the last probe said
        self.done = 0
        self._run: Any = None  # the probe running
        self._t0 = 0.0

    def fit_start(self, learn: Driven) -> None:
        run = learn.run
        if run.kind == "lr_find":  # the learner had no lr_find result: the search runs one first
            self.training.phase = "search · lr_find first · "
            return
        if run.probe is None:
            return
        i, n, phase = run.probe
        self.planned, self._run, self._t0 = n, run, time.monotonic()
        self.training.phase = f"search · probe {i} of {n} ({phase}) · "

    def fit_end(self, learn: Driven, error: BaseException | None) -> None:
        run = learn.run
        if run is not self._run:
            return
        self._run = None
        if not learn.recorder.n_batches:  # stopped before its first batch: not a probe of the result either
            return
        i, n, phase = run.probe
        lr = float(run.lr_max)
        said = f"probe {i} of {n} ({phase})"
        r = self.history.record(
            learn, True, time.monotonic() - self._t0, lr_min=lr, lr_steep=lr, epochs=run.n_epoch,
            code=f"{self.code}  # {said}: {run.total} steps at lr {lr!r}", from_start=True, start=self.start,
            search=self.number, probe=f"{i} of {n} ({phase})",
        )  # fmt: skip
        self.done += 1
        judged = "valid_loss" if math.isfinite(r.valid_loss) else "train_loss"
        ended = f"{judged} {outcome(r):.4f}" if run.end_reason == "completed" else run.end_reason
        number = len(self.history.runs) - 1
        self.say(f"search running: {said} at lr {lr:.4g} ({run.total} steps): {ended} (run #{number})")


class RepeatPhase(Observer):
    """While lr_find(repeats=k) runs: says which range test runs (the live view's `phase`, before the progress)."""

    def __init__(self, training: TrainingView):
        self.training = training

    def fit_start(self, learn: Driven) -> None:
        probe = learn.run.probe
        self.training.phase = f"repeat {probe[0]} of {probe[1]} · " if probe is not None else ""


def watching(learn: Driven, observer: Probes | RepeatPhase, call: Callable[[], Any]) -> Any:
    """`call()` with `observer` first among the learner's observers (before the live view, which shows the phase it
    sets); the phase cleared at the end."""
    learn.observers.insert(0, observer)
    try:
        return call()
    finally:
        learn.observers.remove(observer)
        observer.training.phase = ""


class Searching:
    """The widget's Search button: `prepare` the call, and say (and show) what it found when it ends."""

    def __init__(
        self,
        learn: Driven,
        start: Start,
        history: History,
        markers: Markers,
        controls: Controls,
        training: TrainingView,
        say: Callable[[str], None],
    ):
        self.learn, self.start, self.history, self.markers, self.controls = learn, start, history, markers, controls
        self.training, self.say = training, say
        self.count = 0  # searches started: each probe records the number of its search
        self.probes: Probes | None = None  # the running (or last) search's

    def prepare(self, epochs: int, budget: Any = None) -> tuple[str, Callable[[], LRSearchResult]] | str:
        """The call and what runs it in the background, or a refusal to say (a budget field that is not a number);
        ValueError for a `budget` given that is not a positive finite number."""
        b, refused = self.controls.budget(budget)
        if b is None:
            return refused
        code = search_code(epochs, b)

        def call() -> LRSearchResult:
            self.start.begin(restore=True)  # the start is taken now if there is none yet; else put back
            self.count += 1
            self.probes = Probes(self.history, self.count, code, self.start.name, self.training, self.say)
            return watching(self.learn, self.probes, lambda: self.learn.lr_search(epochs, budget=b))

        return code, call

    def ended(self, res: LRSearchResult) -> str:
        """Keep the result, show the curve it used when it ran one, move the markers to its best (when it finished);
        what the status says."""
        p = self.probes
        number, first, planned = (p.number, p.first, p.planned) if p is not None else (0, 0, 0)
        h = self.history
        h.searches.append(res)
        mine = [i for i, r in enumerate(h.runs) if i >= first and r.search == number and not r.loaded]
        if res.find_steps:  # it ran lr_find first: its curve is the one on the chart now
            h.add_find(res.find)
            self.markers.show_result(res.find)
            h.show_earlier(res.find)
        h.show()
        done = len(res.lrs)
        runs = f"run #{mine[0]}" if len(mine) == 1 else f"runs #{mine[0]} to #{mine[-1]}" if mine else "no run"
        judged = "validation loss" if res.judged_by == "valid_loss" else "training loss (no validation data)"
        cost = f"they cost {res.cost:.2f} fits of {res.epochs} epochs (budget {res.budget:g})"
        found = f"it ran lr_find first ({res.find_steps} steps); " if res.find_steps else ""
        back = f"the weights are back at the start{self.start.said()}"
        if res.end_reason in EARLY_ENDS:
            if not done:
                return f"search {res.end_reason} before its first probe; markers not moved; {back}"
            of = f" of {planned}" if planned else ""
            so_far = f"best so far lr {fmt_lr(res.best)}, by {judged}; " if math.isfinite(res.best) else ""
            return (
                f"search {res.end_reason} after {done}{of} probes; {found}the {done} probes done are kept ({runs}); "
                f"{cost}; {so_far}markers not moved; {back}"
            )
        if not math.isfinite(res.best):
            return f"search {res.end_reason} without a best rate; {cost}; markers not moved; {back}"
        ratio = self.markers.lr_min / self.markers.lr_steep
        self.markers.put(res.best * ratio, res.best)
        plateau = (
            f"; a plateau: no short probe left the starting loss ({res.start_loss:.4g}), so the long probes went "
            "below the curve's rise"
            if res.plateau
            else ""
        )
        where = self._from(res, mine)
        return (
            f"search done: best lr {res.best:.4g} for fit_one_cycle({res.epochs}, {res.best:.4g}){where}, "
            f"by {judged}; {found}{done} probes ({runs}) from {self.start.name}; {cost}{plateau}; markers at "
            f"lr_min={self.markers.lr_min:.4g}, lr_steep={self.markers.lr_steep:.4g} (their ratio kept); {back}"
        )

    def _from(self, res: LRSearchResult, mine: list[int]) -> str:
        """Which probe the best comes from: the long probe (else any) of the lowest score, and how far its rate is
        (the search may correct it for the bias of shorter fits)."""
        scored = [(s, i) for i, s, p in zip(mine, res.scores, res.phases) if p == "long" and math.isfinite(s)]
        scored = scored or [(s, i) for i, s in zip(mine, res.scores) if math.isfinite(s)]
        if not scored:
            return ""
        i = min(scored)[1]
        lr = self.history.runs[i].lr_steep
        if math.isclose(lr, res.best, rel_tol=1e-9):
            return f" (run #{i})"
        return f" (from run #{i} at lr {lr:.4g}, {math.log10(res.best / lr):+.2f} decades)"
