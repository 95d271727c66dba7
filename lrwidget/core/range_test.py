"""The learning-rate range test as it runs on a learner: lrs rising step by step, the divergence stop, the state
put back afterwards however it ends, and the curve with its suggestions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..state import snapshot as snapshots
from . import loop
from .find_result import LRFindResult
from .guard import StopSignal
from .suggest import suggest_lrs

# the smallest num_it whose curve keeps 2 points once the first num_it//10 and the last 5 are dropped
MIN_NUM_IT = 7


def run(learn: Any, sig: StopSignal, lrs: np.ndarray, num_it: int, stop_div: bool) -> LRFindResult:
    """One range test over `lrs` on `learn`, which ends exactly as it began (weights, optimizer, random state)."""
    rec, best = learn.recorder, math.inf

    def check() -> str | None:
        nonlocal best
        s = rec.smooth_loss
        if not math.isfinite(s):
            return "non-finite loss"
        best = min(best, s)
        return "diverged" if stop_div and s > 4 * best else None

    saved = learn.take_state()
    try:
        n_epoch = math.ceil(num_it / loop.steps_per_epoch(len(learn.dls.train), learn.accum_steps))
        per_group = np.repeat(lrs[:, None], len(learn.layer_groups), axis=1)
        said = snapshots.said(saved)
        loop.train(learn, "lr_find", n_epoch, per_group, None, sig, validate=False, check=check, copy_on_disk=said)
    finally:
        try:
            learn.restore_state(saved)
        finally:
            snapshots.discard(saved)
    end = learn.run.end_reason
    s = suggest_lrs(rec.lrs, rec.losses, num_it, end)
    return LRFindResult(
        rec.lrs, rec.losses, rec.raw_losses, s["lr_min"], s["lr_steep"], s["valley"], s["slide"],
        s.reasons, s.points, num_it, end,
    )  # fmt: skip
