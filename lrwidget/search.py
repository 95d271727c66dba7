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
   below `hi`. `best` is the better of the two, a sixth of a decade lower: the half-length fit's best rate is within
   about that of the full fit's (the shortest fits' are not), and a rate too high can wreck the full fit (a
   collapse to chance on the tiny BERT, the deep tanh MLP) where one a little too low costs little.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from lrwidget import DataLoaders, LRFindResult, suggest_lrs

__all__ = ["LRSearchResult", "RepeatedFind", "lr_search", "repeated_find", "usable_range", "plan", "long_rates"]

SWEEP, DECADES, RISE, PROGRESS = 8, 2.5, 0.1, 0.1
AROUND_BEST = (0.25, -0.25)  # decades from the sweep's best rate of the long probes, where the sweep made progress
BELOW_HI = (-1.0, -2.0)  # decades from hi of the long probes on a plateau
LEAN = 1 / 6  # decades from the better long probe to the pick: too high a rate can wreck a fit, too low costs little


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


@dataclass(frozen=True)
class RepeatedFind:
    """k range tests from the same state: the median curve, the band of the repeats, suggestions, their spread."""

    lrs: np.ndarray
    losses: np.ndarray  # median smoothed loss of the repeats still running (an ended repeat counts as +inf)
    band: tuple[np.ndarray, np.ndarray]  # lowest and highest loss of the repeats at each lr (nan: none running)
    suggestions: dict[str, float | None]
    spread: dict[str, float | None]  # max/min of each suggestion over the repeats that gave one
    finds: tuple = field(default=(), repr=False)  # each repeat's LRFindResult
    num_it: int = 100
    end_reason: str = "completed"

    def result(self) -> LRFindResult:
        """The median curve as an LRFindResult (raw losses: the median's too)."""
        s = suggest_lrs(self.lrs, self.losses, self.num_it, self.end_reason)
        return LRFindResult(
            self.lrs, self.losses, self.losses, s["lr_min"], s["lr_steep"], s["valley"], s["slide"], s.reasons,
            s.points, self.num_it, self.end_reason,
        )  # fmt: skip


def median_curve(curves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, lo, hi) of curves of different lengths, an ended curve counting as +inf; cut where the median is."""
    n = max(len(c) for c in curves)
    a = np.full((len(curves), n), np.inf)
    for i, c in enumerate(curves):
        a[i, : len(c)] = np.where(np.isfinite(c), c, np.inf)
    med = np.median(a, axis=0)
    end = int(np.argmax(~np.isfinite(med))) if not np.all(np.isfinite(med)) else n
    lo, hi = a.min(axis=0)[:end], a.max(axis=0)[:end]
    return med[:end], lo, np.where(np.isfinite(hi), hi, np.nan)


def spread_of(suggestions: Sequence[dict]) -> dict[str, float | None]:
    """max/min of each suggestion over the repeats that gave one (None where fewer than one did)."""
    out = {}
    for k in suggestions[0]:
        v = [s[k] for s in suggestions if s.get(k) is not None]
        out[k] = max(v) / min(v) if v else None
    return out


# -- running probes on a learner --------------------------------------------------------------------------------


class Batches:
    """A sized iterable of exactly `n` batches of `dl`, going through it again as often as needed."""

    def __init__(self, dl: Any, n: int):
        self.dl, self.n = dl, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        k = 0
        while k < self.n:
            for b in self.dl:
                if k == self.n:
                    return
                yield b
                k += 1


def _row(learn: Any) -> dict[str, float]:
    """The last epoch's values by name (train_loss, valid_loss, metrics); empty when no epoch ended."""
    if not learn.recorder.values:
        return {}
    names = [n for n in learn.recorder.metric_names if n not in ("epoch", "time")]
    return dict(zip(names, learn.recorder.values[-1]))


def probe(learn: Any, saved: Any, lr: float, steps: int, judge: Any) -> tuple[float, int]:
    """A one-cycle fit of `steps` optimizer steps at `lr` from `saved`: (its judge's loss at the end, steps run)."""
    learn.restore_state(saved)
    dls = learn.dls
    try:
        learn.dls = DataLoaders(Batches(dls.train, steps * learn.accum_steps), judge)
        learn.fit_one_cycle(1, lr)
        loss = _row(learn).get("valid_loss", math.nan)
        return (loss if math.isfinite(loss) else math.inf), len(learn.recorder.lrs)
    finally:
        learn.dls = dls


def _judge(learn: Any, n: int = 8) -> tuple[Any, str]:
    """What probes are judged on: the validation data, else (the same for every probe) n training batches."""
    if learn.dls.valid is not None:
        return learn.dls.valid, "valid_loss"
    return list(Batches(learn.dls.train, min(n, len(learn.dls.train)))), "train_loss"


def _start_loss(learn: Any, judge: Any) -> float:
    dls = learn.dls
    try:
        learn.dls = DataLoaders(dls.train, judge)
        return float(learn.validate()[0])
    finally:
        learn.dls = dls


def lr_search(learn: Any, epochs: int = 5, budget: float = 1.5, **options: Any) -> LRSearchResult:
    """Search the rate for fit_one_cycle(epochs) with short fits from the learner's state, which it ends at.

    cost counts the probes' optimizer steps against fit_one_cycle(epochs)'s and never exceeds `budget`; lr_find's
    steps, when the learner has no lr_find result and the search runs it, are reported as `find_steps`, not in cost.
    Options: sweep (8), decades (2.5), progress (0.1), find (an LRFindResult to use), find_kwargs (for lr_find).
    """
    sweep, decades = int(options.pop("sweep", SWEEP)), float(options.pop("decades", DECADES))
    progress, find = float(options.pop("progress", PROGRESS)), options.pop("find", None)
    find_kwargs = options.pop("find_kwargs", {})
    if options:
        raise TypeError(f"lr_search got unknown options {sorted(options)}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}")
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a positive number of fits, got {budget!r}")
    fit_steps = math.ceil(len(learn.dls.train) / learn.accum_steps) * epochs
    n_sweep, sweep_steps, long_steps = plan(fit_steps, budget, sweep)
    find_steps = 0
    if find is None:
        find = learn.recorder.lr_find_result
    if find is None:
        find = learn.lr_find(show_plot=False, **find_kwargs)
        find_steps = len(find.lrs)
    lo, hi = usable_range(find.lrs, find.losses, find.num_it, decades)
    lrs, scores, steps, phases, reason = [], [], [], [], "completed"
    saved = learn.take_state()
    try:
        judge, judged_by = _judge(learn)
        start = _start_loss(learn, judge)

        def run(rates: Sequence[float], n: int, phase: str) -> bool:
            for lr in rates:
                s, k = probe(learn, saved, float(lr), n, judge)
                lrs.append(float(lr)), scores.append(s), steps.append(k), phases.append(phase)
                if k < n:  # a Stop ended the probe
                    return False
            return True

        plateau = False
        if run(np.geomspace(lo, hi, n_sweep), sweep_steps, "sweep"):
            plateau = not made_progress(start, scores, progress)
            if not run(long_rates(lrs, scores, hi, not plateau), long_steps, "long"):
                reason = "stopped"
        else:
            reason = "stopped"
    finally:
        learn.restore_state(saved)
        close = getattr(saved, "close", None)  # a copy on disk deletes its files
        if callable(close):
            close()
    final = [(lr, s) for lr, s, p in zip(lrs, scores, phases) if p == "long"] or list(zip(lrs, scores))
    best = pick([lr for lr, _ in final], [s for _, s in final]) / 10**LEAN if final else math.nan
    return LRSearchResult(
        best=best, lrs=tuple(lrs), scores=tuple(scores), cost=sum(steps) / fit_steps, budget=float(budget),
        epochs=epochs, find=find, steps=tuple(steps), phases=tuple(phases), start_loss=start, plateau=plateau,
        range=(lo, hi), find_steps=find_steps, judged_by=judged_by, end_reason=reason, fit_steps=fit_steps,
    )  # fmt: skip


def _reseed(learn: Any, seed: int) -> None:
    """Another batch order: torch's generator and the training loader's own (its sampler's too)."""
    torch.manual_seed(seed)
    dl = learn.dls.train
    for obj in (dl, getattr(dl, "sampler", None), getattr(getattr(dl, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator):
            g.manual_seed(seed)


def repeated_find(learn: Any, repeats: int = 3, **lr_find_kwargs: Any) -> RepeatedFind:
    """`repeats` lr_find range tests from the same state, each with its own batch order (the first: the learner's)."""
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats must be a whole number >= 1, got {repeats!r}")
    lr_find_kwargs.setdefault("show_plot", False)
    saved = learn.take_state()
    finds = []
    try:
        base = int(torch.randint(0, 2**62, (1,)))
        for i in range(repeats):
            learn.restore_state(saved)
            if i:
                _reseed(learn, base + i)
            finds.append(learn.lr_find(**lr_find_kwargs))
            if finds[-1].end_reason in ("stopped", "interrupted"):
                break
    finally:
        learn.restore_state(saved)
        close = getattr(saved, "close", None)
        if callable(close):
            close()
    longest = max(finds, key=lambda f: len(f.lrs))
    med, lo, hi = median_curve([np.asarray(f.losses) for f in finds])
    lrs = np.asarray(longest.lrs)[: len(med)]
    ended = len(med) < len(longest.lrs) or any(f.end_reason != "completed" for f in finds[: len(finds) // 2 + 1])
    reason = finds[-1].end_reason if finds[-1].end_reason in ("stopped", "interrupted") else None
    reason = reason or ("diverged" if ended and len(med) < longest.num_it else "completed")
    s = suggest_lrs(lrs, med, longest.num_it, reason)
    learn.recorder.lr_find_result = RepeatedFind(lrs, med, (lo, hi), dict(s), {}, (), longest.num_it, reason).result()
    return RepeatedFind(
        lrs, med, (lo, hi), dict(s), spread_of([f.suggestions for f in finds]), tuple(finds), longest.num_it, reason
    )
