"""Learning-rate and momentum schedules: pure functions of the training position `pos` in [0, 1]."""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike

from .checks import fraction, is_real, positive, whole

__all__ = [
    "exp_sweep",
    "cos_anneal",
    "combined_cos",
    "lr_range",
    "one_cycle",
    "check_one_cycle",
    "check_moms",
    "even_mults",
    "lr_per_group",
]


def exp_sweep(start: float, end: float, pos: ArrayLike) -> np.ndarray | float:
    """Exponential schedule from start to end: even steps in log(lr), as the lr_find sweep needs."""
    return start * (end / start) ** np.asarray(pos, dtype=np.float64)


def cos_anneal(start: ArrayLike, end: ArrayLike, pos: ArrayLike) -> np.ndarray | float:
    """Cosine schedule from start to end (fastai's SchedCos): flat at both ends, fastest in the middle."""
    return start + (1 + np.cos(np.pi * (1 - np.asarray(pos, dtype=np.float64)))) * np.subtract(end, start) / 2


def combined_cos(pct: float, start: ArrayLike, middle: ArrayLike, end: ArrayLike, pos: ArrayLike) -> np.ndarray | float:
    """Cosine start->middle over pos in [0, pct), then middle->end over [pct, 1]: the one-cycle shape."""
    pos = np.asarray(pos, dtype=np.float64)
    start, middle, end = (np.asarray(v, dtype=np.float64) for v in (start, middle, end))
    if max(start.ndim, middle.ndim, end.ndim) > 0:
        pos = pos[..., None]  # per-group values: one column per group, shape (len(pos), n_groups)
    up = cos_anneal(start, middle, pos / pct) if pct > 0 else middle  # pct=0: no warm-up phase
    down = cos_anneal(middle, end, (pos - pct) / (1 - pct)) if pct < 1 else middle  # pct=1: no annealing phase
    return np.where(pos < pct, up, down)[()]  # [()] turns a 0-d result back into a scalar


def lr_range(start_lr: float, end_lr: float, num_it: int) -> np.ndarray:
    """The num_it lrs of the lr_find sweep: start_lr * (end_lr/start_lr) ** (i/num_it), end_lr itself excluded."""
    start_lr, end_lr = positive("start_lr", start_lr), positive("end_lr", end_lr)
    if start_lr >= end_lr:
        raise ValueError(f"start_lr must be below end_lr, got start_lr={start_lr!r} >= end_lr={end_lr!r}")
    return exp_sweep(start_lr, end_lr, np.arange(whole("num_it", num_it)) / num_it)


def check_moms(moms: object) -> tuple[float, float, float]:
    """Momenta (start, middle, end) of the one-cycle schedule, each in [0, 1), refused clearly otherwise."""
    ok = isinstance(moms, (tuple, list, np.ndarray)) and len(moms) == 3 and all(is_real(m) and 0 <= m < 1 for m in moms)
    if not ok:
        raise ValueError(
            f"moms must be three momenta (start, middle, end), each in [0, 1), got {moms!r}; "
            "fastai's default is (0.95, 0.85, 0.95)"
        )
    return tuple(float(m) for m in moms)


def check_one_cycle(
    div: float = 25.0,
    div_final: float = 1e5,
    pct_start: float = 0.25,
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
) -> None:
    """Refuse one-cycle settings that are not numbers in range, before any training starts."""
    positive("div", div), positive("div_final", div_final), fraction("pct_start", pct_start)
    check_moms(moms)


def one_cycle(
    n_steps: int,
    lr_max: float | ArrayLike,
    div: float = 25.0,
    div_final: float = 1e5,
    pct_start: float = 0.25,
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
) -> tuple[np.ndarray, np.ndarray]:
    """Per-batch lrs, shape (n_steps, n_groups), and momenta, shape (n_steps,), of fastai's one-cycle policy."""
    whole("n_steps", n_steps)
    check_one_cycle(div, div_final, pct_start, moms)
    try:
        lr = np.atleast_1d(np.asarray(lr_max, dtype=np.float64))
    except (TypeError, ValueError):
        lr = None
    if lr is None or lr.ndim != 1 or lr.size == 0 or not np.all(np.isfinite(lr) & (lr > 0)):
        raise ValueError(
            f"lr_max must be a positive finite number or a 1-D array of them (one per parameter "
            f"group; see lr_per_group for slices), got {lr_max!r}"
        )
    pos = np.arange(n_steps) / n_steps  # batch k uses pos = k/n_steps
    lrs = combined_cos(pct_start, lr / div, lr, lr / div_final, pos)
    return lrs, combined_cos(pct_start, *moms, pos)


def even_mults(start: float, stop: float, n: int) -> np.ndarray:
    """n values from start to stop evenly spaced in log scale (fastai's even_mults): per-group lrs of a slice."""
    if n == 1:
        return np.array([stop], dtype=np.float64)
    return np.geomspace(start, stop, n)  # endpoints exact, so the last group gets stop itself


def _show(lr: object) -> str:
    if isinstance(lr, slice) and lr.step is None:
        return f"slice({lr.start!r}, {lr.stop!r})"
    return repr(lr)


def _positive(name: str, x: object, shown: object) -> float:
    msg = f"{name} must be a positive finite number or a slice of them, got {_show(shown)}"
    if x is None:
        msg += (
            "; a None lr usually comes from an lr_find suggestion it could not make: res.reasons says why "
            "(pass a number, or run lr_find again as it suggests)"
        )
    if not is_real(x):
        raise TypeError(msg)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(msg)
    return float(x)


def lr_per_group(lr: float | slice | ArrayLike, n_groups: int, name: str = "lr_max", stacklevel: int = 2) -> np.ndarray:
    """One lr per layer group from a number, slice(a, b), slice(None, b) or a list, read as fastai does."""
    whole("n_groups", n_groups)
    if isinstance(lr, np.ndarray) and lr.ndim == 0:
        lr = lr.item()
    if isinstance(lr, (list, tuple, np.ndarray)):
        values = list(np.asarray(lr, dtype=object).ravel()) if isinstance(lr, np.ndarray) else list(lr)
        if len(values) != n_groups:
            raise ValueError(
                f"{name} has {len(values)} learning rates, but the model has {n_groups} layer "
                f"group{'s' * (n_groups != 1)}: give one per group, a number, or a slice"
            )
        return np.array([_positive(name, v, lr) for v in values])
    if not isinstance(lr, slice):
        return np.full(n_groups, _positive(name, lr, lr))
    if lr.step is not None:
        raise ValueError(f"{name} must be a number or slice(start, stop) without a step, got {lr!r}")
    stop = _positive(name, lr.stop, lr)
    if lr.start is None:
        out = np.full(n_groups, stop / 10)
        out[-1] = stop
        return out
    start = _positive(name, lr.start, lr)
    if start > stop and n_groups > 1:
        # Shown once per calling line by Python's default warning filter.
        warnings.warn(
            f"{name}={_show(lr)} has start > stop, so the earlier layers get the higher learning rate "
            f"({start:g} for the first group, {stop:g} for the last); swap them if that is not intended",
            UserWarning,
            stacklevel=stacklevel,  # whose line the warning names (2: the caller's)
        )
    return even_mults(start, stop, n_groups)
