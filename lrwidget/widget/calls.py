"""The calls the widget makes, written as `w.code` shows them (values in full precision), and a sweep's plan."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..core.checks import is_real
from .runs import sweep_rates

FIND_ORDER = ("start_lr", "end_lr", "num_it", "stop_div")


def plain(v: Any) -> Any:
    """numpy scalars as Python numbers, so that their repr is plain Python."""
    if isinstance(v, (bool, str)) or v is None:
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    return v


def as_code(v: Any) -> str:
    """A value as written in code: its repr, functions by name (suggest_funcs=(valley, slide))."""
    if callable(v):
        f = getattr(v, "func", v)
        return getattr(f, "__name__", repr(v))
    if isinstance(v, tuple):
        return f"({', '.join(map(as_code, v))}{',' if len(v) == 1 else ''})"
    if isinstance(v, list):
        return f"[{', '.join(map(as_code, v))}]"
    return repr(v)


def find_kwargs(fields: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """lr_find's keywords: the fields' values, then those `given` (plain numbers, no show_plot), in the call's order."""
    kw = {**fields, **{k: plain(v) for k, v in given.items() if k != "show_plot"}}
    return {k: kw[k] for k in sorted(kw, key=lambda k: FIND_ORDER.index(k) if k in FIND_ORDER else len(FIND_ORDER))}


def find_code(kw: dict[str, Any], extra: str) -> str:
    """`learn.lr_find(...)` as it ran; `extra` is what the learner adds (a fastai Learner's suggest_funcs)."""
    return f"learn.lr_find({', '.join(f'{k}={as_code(v)}' for k, v in kw.items())}{extra})"


def fit_code(n: int, lo: float, hi: float, accum_steps: int) -> str:
    """`learn.fit_one_cycle(n, lr_max=slice(lo, hi))`, saying so when a step sums several batches' gradients."""
    a = accum_steps
    said = f"  # learn.accum_steps == {a}: one optimizer step every {a} batches" if a > 1 else ""
    return f"learn.fit_one_cycle({n!r}, lr_max=slice({lo!r}, {hi!r})){said}"


def sweep_plan(lrs: Any, lr_min: float, lr_steep: float) -> tuple[list[float], list[tuple[float, float]]]:
    """The rates a sweep tries (five over a decade each side of lr_steep unless `lrs`), and each one's slice, which
    keeps the markers' ratio (one parameter group trains at the rate); ValueError for rates that are not rates."""
    if lrs is None:
        rates = sweep_rates(lr_steep)
    else:
        rates = list(lrs) if isinstance(lrs, (list, tuple)) or hasattr(lrs, "__array__") else None
        if not rates or not all(is_real(r) and math.isfinite(r) and r > 0 for r in rates):
            raise ValueError(f"lrs must be a non-empty list of positive finite learning rates, got {lrs!r}")
        rates = [float(r) for r in rates]
    ratio = lr_min / lr_steep
    return rates, [(r * ratio, r) for r in rates]
