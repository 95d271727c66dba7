"""Learning-rate suggestions on an lr_find curve (smoothed loss against lr): minimum, steep, valley and slide.

Each method takes an already trimmed curve (see `trim`) and returns `(value, point, reason)`: the suggested lr
and the (lr, loss) point to mark on the curve, or `(None, None, reason)` when the curve gives none.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Suggestions", "suggest_lrs", "trim", "minimum", "steep", "valley", "slide"]

Point = tuple[float, float]
Result = tuple["float | None", "Point | None", "str | None"]

NAMES = ("lr_min", "lr_steep", "valley", "slide")
FLAT = "the loss is flat: it does not change over this lr range; check that the model trains, or widen start_lr..end_lr"
NEVER_DECREASES = "the loss never decreases; lower start_lr"


def too_short(n: int) -> str:
    """Why a curve of `n` usable points gives no suggestion."""
    return f"the curve has only {n} usable point{'' if n == 1 else 's'}; run lr_find with more steps (num_it)"


def _np(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on the GPU or requiring grad
        x = x.detach().cpu()
    return np.asarray(x, dtype=np.float64)


class Suggestions(dict):
    """The four suggestions by name (float or None); `.reasons` says why one is None, `.points` where to mark each."""

    def __init__(
        self, values=(), reasons: dict[str, str] | None = None, points: dict[str, Point] | None = None
    ) -> None:
        super().__init__(values)
        self.reasons: dict[str, str] = dict(reasons or {})
        self.points: dict[str, Point] = dict(points or {})


def trim(lrs: ArrayLike, losses: ArrayLike, num_it: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The curve fastai suggests from: drop the first num_it//10 and last 5 points, cut at the first non-finite loss."""
    lrs, losses = _np(lrs), _np(losses)
    if lrs.ndim != 1 or lrs.shape != losses.shape:
        raise ValueError(f"lrs and losses must be 1-D and of equal length, got shapes {lrs.shape} and {losses.shape}")
    if not np.all(np.isfinite(lrs) & (lrs > 0)):
        raise ValueError("lrs must all be positive finite numbers")
    skip = (len(lrs) if num_it is None else num_it) // 10
    lrs, losses = lrs[skip:-5], losses[skip:-5]
    bad = np.flatnonzero(~np.isfinite(losses))
    end = bad[0] if len(bad) else len(losses)
    return lrs[:end], losses[:end]


def minimum(lrs: ArrayLike, losses: ArrayLike) -> Result:
    """One tenth of the lr at the minimum loss (fastai's lr_min): safely below where the loss stops improving."""
    lrs, losses = _np(lrs), _np(losses)
    if len(losses) < 2:
        return None, None, too_short(len(losses))
    i = int(np.argmin(losses))
    if i == 0:
        return None, None, NEVER_DECREASES
    return float(lrs[i]) / 10, (float(lrs[i]), float(losses[i])), None


STEEP_DECADES = 3


def steep(lrs: ArrayLike, losses: ArrayLike) -> Result:
    """The lr where the loss falls fastest against log(lr), on the descent into the minimum loss."""
    lrs, losses = _np(lrs), _np(losses)
    if len(losses) < 2:
        return None, None, too_short(len(losses))
    end = int(np.argmin(losses)) + 1
    # only the STEEP_DECADES decades below the minimum: fastai searches the whole curve and can land past a
    # divergence, or on a blip of the noisy first steps (the smoothed loss averages few batches) far before the descent
    start = int(np.searchsorted(lrs[:end], lrs[end - 1] / 10**STEEP_DECADES))
    grads = np.diff(losses[start:end]) / np.diff(np.log(lrs[start:end]))
    if len(grads) == 0 or grads.min() >= 0:
        return None, None, NEVER_DECREASES
    i = start + int(np.argmin(grads))
    return float(lrs[i]), (float(lrs[i]), float(losses[i])), None


def valley(lrs: ArrayLike, losses: ArrayLike) -> Result:
    """fastai's valley (its default): the lr about half way along the longest decreasing stretch of the loss."""
    lrs, losses = _np(lrs), _np(losses)
    n = len(losses)
    if n < 3:
        return None, None, too_short(n)
    # lds[i]: longest strictly decreasing subsequence ending at i. fastai's O(n^2) double loop, inner loop as numpy;
    # its running max_end is the first index with the largest lds, i.e. argmax.
    lds = np.ones(n, dtype=np.int64)
    for i in range(1, n):
        prev = lds[:i][losses[:i] > losses[i]]
        if prev.size:
            lds[i] = prev.max() + 1
    max_end = int(np.argmax(lds))
    length = int(lds[max_end])
    if length < 3:  # fastai's index would fall before the stretch or wrap round to the last lr
        return (
            None,
            None,
            NEVER_DECREASES
            if length == 1
            else ("the loss decreases over only 2 points; run lr_find with more steps (num_it) or a lower start_lr"),
        )
    max_start = max_end - length
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx]), (float(lrs[idx]), float(losses[idx])), None


def slide(
    lrs: ArrayLike, losses: ArrayLike, lr_diff: int = 15, thresh: float = 0.005, adjust_value: float = 1.0
) -> Result:
    """fastai's slide: going left from the end, the lr where the loss gradient settles within thresh over lr_diff."""
    lrs, losses = _np(lrs), _np(losses)
    n = len(losses)
    if n <= lr_diff:
        return (
            None,
            None,
            (
                f"the curve has only {n} usable point{'' if n == 1 else 's'}, slide needs more than "
                f"{lr_diff}; run lr_find with more steps (num_it)"
            ),
        )
    grad = np.gradient(losses)
    right, left = -1, -1 - lr_diff
    lr = lrs[left]
    while left >= -n and abs(grad[right] - grad[left]) > thresh:
        lr = lrs[left]
        right, left = right - 1, left - 1
    lr = float(lr) * adjust_value
    return lr, (lr, float(np.interp(np.log10(lr), np.log10(lrs), losses))), None


def _ended_early(end_reason: str | None, n_run: int) -> str | None:
    """Why a curve is too short, where lr_find's end says more than "too few steps"."""
    if end_reason == "non-finite loss" and n_run <= 1:
        return (
            "the loss was not finite from the first step: check the model and data for NaN or inf "
            "(lowering start_lr will not help)"
        )
    if end_reason in ("diverged", "non-finite loss"):
        what = "diverged" if end_reason == "diverged" else "stopped being finite"
        return f"the loss {what} after {n_run} steps, too early to suggest from; lower start_lr"
    if end_reason in ("stopped", "interrupted"):
        if n_run == 0:
            return f"lr_find was {end_reason} before its first step; let it run to the end"
        return f"lr_find was {end_reason} after {n_run} steps, too early to suggest from; let it run to the end"
    return None


def _unusable(x: np.ndarray, y: np.ndarray, n_run: int, num_it: int | None) -> str | None:
    """Why a trimmed curve gives no suggestion at all, or None when it can give some."""
    if len(y) == 0:
        skip = (n_run if num_it is None else num_it) // 10
        if n_run == 0:
            return "lr_find recorded no points"
        if n_run - 5 - skip <= 0:
            return (
                f"the curve has no usable points: of the {n_run} steps run, the first {skip} and the last 5 are "
                f"left out; run lr_find with more steps (num_it)"
            )
        return "the loss is not finite from the first usable point on; lower start_lr"
    if len(y) < 2:
        return too_short(len(y))
    if np.ptp(y) <= 1e-12 * max(1.0, abs(float(y.mean()))):
        return FLAT
    if np.argmin(y) == 0:
        return NEVER_DECREASES  # the first point is the best: no suggestion is meaningful, slide's included
    return None


def suggest_lrs(
    lrs: ArrayLike, losses: ArrayLike, num_it: int | None = None, end_reason: str | None = None
) -> Suggestions:
    """The four suggestions on a whole lr_find curve, with the reason for each None; raises only on malformed input."""
    x, y = trim(lrs, losses, num_it)
    n_run = len(_np(lrs))
    # end_reason (lr_find's: 'diverged', 'non-finite loss', 'stopped'...) lets a too-short curve say why it is
    why = _ended_early(end_reason, n_run) if len(y) < 2 else None
    why = why or _unusable(x, y, n_run, num_it)
    out = Suggestions()
    for name, method in zip(NAMES, (minimum, steep, valley, slide)):
        value, point, reason = (None, None, why) if why else method(x, y)
        out[name] = value
        if point is None:
            out.reasons[name] = reason
        else:
            out.points[name] = point
    return out
