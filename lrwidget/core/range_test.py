"""The learning-rate range test as it runs on a learner: lrs rising step by step, the divergence stop, the state
put back afterwards however it ends, and the curve with its suggestions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..state import snapshot as snapshots
from ..state.copies import loader_generators
from . import loop
from .find_result import LRFindResult
from .guard import StopSignal
from .suggest import suggest_lrs

# the smallest num_it whose curve keeps 2 points once the first num_it//10 and the last 5 are dropped
MIN_NUM_IT = 7


def run(learn: Any, sig: StopSignal, lrs: np.ndarray, num_it: int, stop_div: bool, repeats: int = 1) -> LRFindResult:
    """`repeats` range tests over `lrs` on `learn`, each but the first with its own batch order, and the curve (their
    median); the learner ends exactly as it began (weights, optimizer, random state), however the run ends."""
    saved = learn.take_state()
    dl = learn.dls.train
    sampler_seed = getattr(getattr(dl, "sampler", None), "seed", None)  # a DistributedSampler's (N processes)
    curves: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []
    try:
        for i in range(repeats):
            if i:
                learn.restore_state(saved)
                reshuffle(dl, i, sampler_seed)
            probe = (i + 1, repeats, "repeat") if repeats > 1 else None
            curves.append(_one(learn, sig, lrs, num_it, stop_div, snapshots.said(saved), probe))
            if curves[-1][3] in EARLY:
                break
    finally:
        try:
            learn.restore_state(saved)
            if sampler_seed is not None:
                dl.sampler.seed = sampler_seed
        finally:
            snapshots.discard(saved)
    if len(curves) == 1:
        (x, y, raw, end), extra = curves[0], {}
    else:
        x, y, raw, end, extra = median_of(curves)
    s = suggest_lrs(x, y, num_it, end)
    if len(curves) > 1:
        extra["spread"] = spread_of([suggest_lrs(c[0], c[1], num_it, c[3]) for c in curves])
    return LRFindResult(
        x, y, raw, s["lr_min"], s["lr_steep"], s["valley"], s["slide"], s.reasons, s.points, num_it, end,
        repeats=len(curves), **extra,
    )  # fmt: skip


EARLY = ("stopped", "interrupted")


def _one(
    learn: Any, sig: StopSignal, lrs: np.ndarray, num_it: int, stop_div: bool, said: str, probe: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """One range test (the state is put back by the caller): its lrs, smoothed and raw losses, and end."""
    rec, best = learn.recorder, math.inf

    def check() -> str | None:
        nonlocal best
        s = rec.smooth_loss
        if not math.isfinite(s):
            return "non-finite loss"
        best = min(best, s)
        return "diverged" if stop_div and s > 4 * best else None

    n_epoch = math.ceil(num_it / loop.steps_per_epoch(len(learn.dls.train), learn.accum_steps))
    per_group = np.repeat(lrs[:, None], len(learn.layer_groups), axis=1)
    loop.train(
        learn, "lr_find", n_epoch, per_group, None, sig, validate=False, check=check, copy_on_disk=said, probe=probe
    )
    return np.asarray(rec.lrs, dtype=float), np.asarray(rec.losses), np.asarray(rec.raw_losses), learn.run.end_reason


def reshuffle(dl: Any, i: int, sampler_seed: int | None) -> None:
    """Another batch order for repeat `i`, the same on every rank and in every call: the same curve again."""
    seed = REPEAT_SEED + i
    torch.manual_seed(seed)
    for g in loader_generators(dl):
        g.manual_seed(seed)
    if sampler_seed is not None:
        dl.sampler.seed = sampler_seed + seed


REPEAT_SEED = 9176  # repeat i > 0 shuffles from REPEAT_SEED + i (repeat 0 keeps the learner's own order)


def median_of(curves: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]) -> tuple:
    """The median curve of repeats that may have ended at different steps (an ended repeat counts as above every
    loss from there on), cut where the median ends; the band (lowest, highest) along it; and how it ended."""
    n = max(len(c[1]) for c in curves)
    x = next(c[0] for c in curves if len(c[1]) == n)
    smooth, raw = (np.full((len(curves), n), np.inf) for _ in range(2))
    for i, (_, y, r, _) in enumerate(curves):
        smooth[i, : len(y)] = np.where(np.isfinite(y), y, np.inf)
        raw[i, : len(r)] = np.where(np.isfinite(r), r, np.inf)
    med = np.median(smooth, axis=0)
    cut = int(np.argmax(~np.isfinite(med))) if not np.isfinite(med).all() else n
    early = [c[3] for c in curves if c[3] in EARLY]
    end = early[0] if early else ("completed" if cut == n and all(c[3] == "completed" for c in curves) else "diverged")
    lo, hi = smooth.min(axis=0)[:cut], smooth.max(axis=0)[:cut]
    band = (lo, np.where(np.isfinite(hi), hi, np.nan))
    return x[:cut], med[:cut], np.median(raw, axis=0)[:cut], end, {"band": band}


def spread_of(suggestions: list[dict]) -> dict[str, float | None]:
    """max/min of each suggestion over the repeats that gave one (None where none did)."""
    out: dict[str, float | None] = {}
    for k in suggestions[0]:
        v = [s[k] for s in suggestions if s.get(k) is not None]
        out[k] = max(v) / min(v) if v else None
    return out
