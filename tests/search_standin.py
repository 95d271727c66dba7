"""Until the core's `learn.lr_search` and `lr_find(repeats=k)` land in main (issue #24): a Learner that runs
lrwidget/search.py's prototype and tells its observers what the core's will (DESIGN.md): each probe is a fit with
`learn.run.probe == (i, n, phase)` and `learn.run.lr_max` its rate; each repeat an lr_find with `learn.run.probe ==
(i, k, "repeat")`; the repeated result has `band`, `spread` and `repeats`. Where the core's Learner has lr_search,
`SearchLearner` is that Learner and nothing here runs."""

from __future__ import annotations

import math
from typing import Any

from lrwidget import Learner, LRFindResult
from lrwidget.core.events import Observer

REAL = hasattr(Learner, "lr_search")


class Banded(LRFindResult):
    """An LRFindResult with the band, spread and repeats the core's will have."""

    def fields(self) -> dict[str, Any]:
        return {**super().fields(), **self.__dict__.get("more", {})}

    @classmethod
    def of(cls, res: LRFindResult, band: Any, spread: dict, repeats: int) -> Banded:
        out = cls(**res.fields())
        out.__dict__["more"] = {"band": band, "spread": dict(spread), "repeats": repeats}
        return out


class _Tag(Observer):
    """First among the observers: puts the probe's place and rate on learn.run as each run starts."""

    def __init__(self, planned: int, n_sweep: int, phase: str = ""):
        self.planned, self.n_sweep, self.phase, self.i = planned, n_sweep, phase, 0

    def fit_start(self, learn: Any) -> None:
        run = learn.run
        run.lr_max = learn.last_lr_max  # noqa: B010 - the core's RunInfo field, on the prototype's
        if run.kind == "lr_find" and self.phase != "repeat":
            run.probe = None
            return
        self.i += 1
        phase = self.phase or ("sweep" if self.i <= self.n_sweep else "long")
        run.probe = (self.i, self.planned, phase)


class StandIn(Learner):
    last_lr_max: Any = None

    def fit_one_cycle(self, n_epoch: int, lr_max: Any = None, *args: Any, **kwargs: Any) -> None:
        self.last_lr_max = lr_max
        super().fit_one_cycle(n_epoch, lr_max, *args, **kwargs)

    def lr_search(self, epochs: int = 5, budget: float = 1.5, **options: Any) -> Any:
        from lrwidget import search as proto

        fit_steps = math.ceil(len(self.dls.train) / self.accum_steps) * epochs
        n_sweep = proto.plan(fit_steps, budget)[0]
        tag = _Tag(n_sweep + 2, n_sweep)
        self.observers.insert(0, tag)
        try:
            return proto.lr_search(self, epochs, budget, **options)
        finally:
            self.observers.remove(tag)

    def lr_find(self, *args: Any, repeats: int = 1, **kwargs: Any) -> LRFindResult:
        if repeats == 1:
            return super().lr_find(*args, **kwargs)
        from lrwidget import search as proto

        tag = _Tag(repeats, 0, "repeat")
        self.observers.insert(0, tag)
        try:
            rf = proto.repeated_find(self, repeats, **kwargs)
        finally:
            self.observers.remove(tag)
        res = Banded.of(rf.result(), rf.band, rf.spread, repeats)
        self.recorder.lr_find_result = res
        return res


SearchLearner = Learner if REAL else StandIn
