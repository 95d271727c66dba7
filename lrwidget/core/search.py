"""lr_search: a budget of short one-cycle fits from the same start, at rates from the lr_find curve; repeated lr_find.

The method, chosen by benchmarks/suggestions.py (see benchmarks/lr_search.md for the alternatives and their numbers):

1. The curve's usable range: `hi` is where the smoothed loss, past its minimum, first rises 10% above where it
   started (else the curve's end); the range is the `decades` (2.5) below it. A plateau's curve is flat up to `hi`,
   so the whole range stays in play.
2. A sweep: `sweep` (8) one-cycle fits of budget/3/sweep of the fit's steps each (1/16 at budget 1.5), at rates
   spread evenly in log over the range, each judged by its validation loss.
3. Two long probes of budget/3 each (half the fit at budget 1.5) decide. Where the sweep made progress (its best
   loss 10% under the starting loss), they go a quarter decade either side of the sweep's best rate: the sweep's
   short fits are biased, higher on most tasks, lower on some (the benchmark's regression). Where it made none (a
   plateau: no short fit escapes it, so the sweep only shows where training breaks), they go one and two decades
   below `hi`. `best` is the better of the two (their geometric mean where their scores are within 5%: half a
   decade apart, they cannot tell which side the full fit's best is on), a sixth of a decade lower: the half-length
   fit's best rate is within about that of the full fit's (the shortest fits' are not), and a rate too high can
   wreck the full fit (a collapse to chance on the tiny BERT, the deep tanh MLP) where one a little too low costs
   little.

In N processes every rank runs the same search on its shard (the scores are summed over the ranks, so every rank
decides the same); each probe is one run of the one loop, which observers see as a fit (RunInfo.probe, .lr_max).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..state import snapshot as snapshots
from . import loop, range_test
from .checks import positive, whole
from .find_result import LRFindResult, read_float
from .guard import StopSignal
from .optim import mom_key
from .schedules import lr_range, one_cycle

__all__ = ["LRSearchResult", "run", "check", "usable_range", "plan", "made_progress", "long_rates", "pick", "decide"]

SWEEP, DECADES, RISE, PROGRESS = 8, 2.5, 0.1, 0.1
AROUND_BEST = (0.25, -0.25)  # decades from the sweep's best rate of the long probes, where the sweep made progress
BELOW_HI = (-1.0, -2.0)  # decades from hi of the long probes on a plateau
LEAN = 1 / 6  # decades from the better long probe to the pick: too high a rate can wreck a fit, too low costs little
TIE = 0.05  # long probes whose scores are this close (relative) tell their rates apart no better than noise


# -- the maths: pure functions -----------------------------------------------------------------------------------


def usable_range(lrs: Any, losses: Any, num_it: int | None = None, decades: float = DECADES, rise: float = RISE):
    """(lo, hi): hi where the smoothed loss, past its minimum, rises `rise` above its start (else the curve's end)."""
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    skip = (len(lrs) if num_it is None else num_it) // 10
    x, y = lrs[skip : max(skip, len(lrs) - 5)], losses[skip : max(skip, len(lrs) - 5)]
    bad = np.flatnonzero(~np.isfinite(y))
    x, y = (x[: bad[0]], y[: bad[0]]) if len(bad) else (x, y)
    if len(y) < 3:  # too short to read: the whole range run, up to the last finite point
        ok = lrs[np.isfinite(losses)]
        hi = float(ok[-1] if len(ok) else lrs[0])
        return hi / 10**decades, hi
    start = float(np.median(y[: max(3, len(y) // 10)]))
    after = np.arange(len(y)) > int(np.argmin(y))
    above = np.flatnonzero(after & (y > start + rise * abs(start)))
    hi = float(x[above[0]] if len(above) else x[-1])
    return hi / 10**decades, hi


def plan(fit_steps: int, budget: float, sweep: int = SWEEP) -> tuple[int, int, int]:
    """(sweep probes, steps of each, steps of each of the two long probes): a third of the budget to the sweep."""
    total = math.floor(budget * fit_steps + 1e-9)
    long = total // 3
    n = min(sweep, total - 2 * long)
    if long < 1 or n < 1:
        raise ValueError(
            f"a budget of {budget} fits of {fit_steps} steps leaves {total} steps, too few for lr_search's probes "
            "(at least 3): raise budget or epochs"
        )
    return n, (total - 2 * long) // n, long


def made_progress(start_loss: float, scores: Sequence[float], progress: float = PROGRESS) -> bool:
    """True when the best score is `progress` (a fraction of the start loss) under the start loss."""
    best = min((s for s in scores if math.isfinite(s)), default=math.inf)
    return math.isfinite(start_loss) and best < start_loss - progress * abs(start_loss)


def long_rates(lrs: Sequence[float], scores: Sequence[float], hi: float, progressed: bool) -> list[float]:
    """The long probes' rates: around the sweep's best rate, or on a plateau below hi (AROUND_BEST, BELOW_HI)."""
    if not progressed:
        return [hi * 10**d for d in BELOW_HI]
    s = [x if math.isfinite(x) else math.inf for x in scores]
    best = lrs[int(np.argmin(s))]
    return [best * 10**d for d in AROUND_BEST]


def pick(lrs: Sequence[float], scores: Sequence[float]) -> float:
    """The rate of the lowest finite score (the lowest rate when none is finite)."""
    s = [x if math.isfinite(x) else math.inf for x in scores]
    return float(lrs[int(np.argmin(s))] if min(s) < math.inf else min(lrs))


def decide(lrs: Sequence[float], scores: Sequence[float], tie: float = TIE, lean: float = LEAN) -> float:
    """The search's pick from its long probes: the better one's rate, or the geometric mean of two whose scores are
    within `tie` of each other (they cannot tell their rates apart), `lean` decades lower."""
    s = [x if math.isfinite(x) else math.inf for x in scores]
    if len(lrs) == 2 and max(s) < math.inf and abs(s[0] - s[1]) <= tie * min(s):
        return math.sqrt(lrs[0] * lrs[1]) / 10**lean
    return pick(lrs, scores) / 10**lean


# -- the result -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LRSearchResult:
    """What lr_search found: `best` for fit_one_cycle(epochs, best); every probe's rate, score, steps and phase."""

    best: float
    lrs: tuple[float, ...]
    scores: tuple[float, ...]  # validation loss at each probe's end (training loss without validation data)
    cost: float  # training steps of the probes / steps of fit_one_cycle(epochs); never above budget
    budget: float
    epochs: int
    find: Any  # the LRFindResult whose curve gave the range
    steps: tuple[int, ...] = ()  # each probe's optimizer steps
    phases: tuple[str, ...] = ()  # "sweep" or "long"
    start_loss: float = math.nan  # the judge's loss at the start
    plateau: bool = False  # the sweep made no progress: the long probes went below the range's top
    range: tuple[float, float] = (math.nan, math.nan)
    find_steps: int = 0  # lr_find steps run by lr_search itself (not in cost: not training batches of a fit)
    judged_by: str = "valid_loss"
    end_reason: str = "completed"  # or "stopped"
    fit_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON takes it; `find` as its own to_dict, non-finite floats as strings."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["find"] = self.find.to_dict() if hasattr(self.find, "to_dict") else None
        fix = lambda v: v if not isinstance(v, float) or math.isfinite(v) else str(v)  # noqa: E731
        return {k: [fix(x) for x in v] if isinstance(v, (list, tuple)) else fix(v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LRSearchResult:
        """The result `to_dict` gave; ValueError naming what is missing or wrong."""
        if not isinstance(d, dict):
            raise TypeError(f"LRSearchResult.from_dict takes a dict (as to_dict gives), got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        missing = sorted({"best", "lrs", "scores", "cost", "budget", "epochs", "find"} - set(d))
        if missing:
            raise ValueError(f"an lr_search result needs the keys {missing}")
        num = lambda k, v: read_float(k, v)  # noqa: E731
        out: dict[str, Any] = {}
        for k, v in d.items():
            if k not in names:
                raise ValueError(f"an lr_search result has no field {k!r}")
            if k == "find":
                out[k] = None if v is None else LRFindResult.from_dict(v)
            elif k in ("lrs", "scores", "range"):
                out[k] = tuple(num(f"{k}[{i}]", x) for i, x in enumerate(v))
            elif k in ("steps", "phases"):
                out[k] = tuple(v)
            elif k in ("best", "cost", "budget", "start_loss"):
                out[k] = num(k, v)
            else:
                out[k] = v
        return cls(**out)


# -- running the probes, in whichever process the run goes (each rank of N runs the same search on its shard) ------


def run(learn: Any, sig: StopSignal, epochs: int, budget: float, find: Any, options: dict) -> LRSearchResult:
    """The search on `learn`, which ends exactly at its start (weights, optimizer, random state) however it ends."""
    sweep, decades = int(options.get("sweep", SWEEP)), float(options.get("decades", DECADES))
    progress = float(options.get("progress", PROGRESS))
    per_epoch = loop.steps_per_epoch(len(learn.dls.train), learn.accum_steps)
    fit_steps = per_epoch * epochs
    n_sweep, sweep_steps, long_steps = plan(fit_steps, budget, sweep)
    saved = learn.take_state()
    lrs: list[float] = []
    scores: list[float] = []
    steps: list[int] = []
    phases: list[str] = []
    try:
        find_steps = 0
        if find is None:  # the learner has no lr_find result: the defaults' range test, its state put back
            find = range_test.run(learn, sig, lr_range(1e-7, 10, 100), 100, True)
            find_steps = len(find.lrs)
            if find.end_reason in EARLY:
                return _result(find, lrs, scores, steps, phases, find.end_reason, budget, epochs, fit_steps)
        lo, hi = usable_range(find.lrs, find.losses, find.num_it, decades)
        judge = _judge(learn)
        start = _score(learn, sig, judge)
        planned = n_sweep + 2
        reason = "completed"

        def probe(rates: Sequence[float], n: int, phase: str) -> bool:
            nonlocal reason
            for lr in rates:
                learn.restore_state(saved)
                k, score = _probe(learn, sig, float(lr), n, per_epoch, judge, (len(lrs) + 1, planned, phase))
                if k:
                    lrs.append(float(lr)), scores.append(score), steps.append(k), phases.append(phase)
                if learn.run.end_reason in EARLY:
                    reason = learn.run.end_reason
                    return False
            return True

        plateau = False
        if probe(np.geomspace(lo, hi, n_sweep), sweep_steps, "sweep"):
            plateau = not made_progress(start, scores, progress)
            probe(long_rates(lrs, scores, hi, not plateau), long_steps, "long")
        return _result(
            find, lrs, scores, steps, phases, reason, budget, epochs, fit_steps, start, plateau, (lo, hi), find_steps,
            "valid_loss" if learn.dls.valid is not None else "train_loss",
        )  # fmt: skip
    finally:
        try:
            learn.restore_state(saved)
        finally:
            snapshots.discard(saved)


EARLY = ("stopped", "interrupted")
JUDGE_BATCHES = 8  # without validation data, probes are judged on this many training batches, the same for each


def _judge(learn: Any) -> list | None:
    """What probes are judged on: the validation data (None), else the first training batches (the same for every
    probe: taken from the start's state, which is put back after)."""
    if learn.dls.valid is not None:
        return None
    return list(itertools.islice(iter(learn.dls.train), JUDGE_BATCHES))


def _score(learn: Any, sig: StopSignal, judge: list | None) -> float:
    """The judge's loss of the model as it is (inf for a non-finite one)."""
    loss = loop.evaluate(learn, sig, judge)[0] if judge is not None else loop.evaluate(learn, sig)[0]
    return loss if math.isfinite(loss) else math.inf


def _probe(
    learn: Any, sig: StopSignal, lr: float, steps: int, per_epoch: int, judge: list | None, probe: tuple
) -> tuple[int, float]:
    """A one-cycle fit of `steps` optimizer steps at `lr` (every layer group): (its steps run, its score)."""
    per_group = np.full(len(learn.layer_groups), lr)
    sched, mom = one_cycle(steps, per_group, moms=learn.moms)
    n_epoch = math.ceil(steps / per_epoch)
    moms = mom if mom_key(learn.opt) else None
    loop.train(learn, "fit", n_epoch, sched, moms, sig, validate=judge is None, probe=probe, lr_max=lr)
    done = learn.recorder.n_batches
    if not done or learn.run.end_reason in EARLY:
        return done, math.nan
    if judge is None:
        loss = learn.recorder.values[-1][1]
        return done, loss if math.isfinite(loss) else math.inf
    return done, _score(learn, sig, judge)


def _result(
    find: Any, lrs: list, scores: list, steps: list, phases: list, reason: str, budget: float, epochs: int,
    fit_steps: int, start: float = math.nan, plateau: bool = False, rng: tuple = (math.nan, math.nan),
    find_steps: int = 0, judged_by: str = "valid_loss",
) -> LRSearchResult:  # fmt: skip
    final = [(lr, s) for lr, s, p in zip(lrs, scores, phases) if p == "long"] or list(zip(lrs, scores))
    best = decide([lr for lr, _ in final], [s for _, s in final]) if final else math.nan
    return LRSearchResult(
        best=best, lrs=tuple(lrs), scores=tuple(scores), cost=sum(steps) / fit_steps, budget=float(budget),
        epochs=epochs, find=find, steps=tuple(steps), phases=tuple(phases), start_loss=start, plateau=plateau,
        range=rng, find_steps=find_steps, judged_by=judged_by, end_reason=reason, fit_steps=fit_steps,
    )  # fmt: skip


def check(epochs: Any, budget: Any, options: dict) -> tuple[int, float, dict]:
    """lr_search's arguments checked where they enter: (epochs, budget, options)."""
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise TypeError(f"lr_search got unknown options {unknown}: it takes {sorted(OPTIONS)}")
    epochs = whole("epochs", epochs)
    budget = positive("budget", budget)
    if "sweep" in options:
        whole("sweep", options["sweep"], 2)
    for k in ("decades", "progress"):
        if k in options:
            positive(k, options[k])
    return epochs, budget, options


OPTIONS = {"sweep", "decades", "progress", "find"}
