"""Input checks: each argument is checked once, where it enters, with a message that says what to pass instead."""

from __future__ import annotations

import math
from functools import partial
from numbers import Integral, Real
from typing import Any


def is_real(x: object) -> bool:
    """A real number that is not a bool."""
    return isinstance(x, Real) and not isinstance(x, bool)


def is_int(x: object) -> bool:
    """A whole number that is not a bool."""
    return isinstance(x, Integral) and not isinstance(x, bool)


def positive(name: str, v: Any, allow_zero: bool = False) -> float:
    """`v` as a float when it is a positive (or, with `allow_zero`, non-negative) finite number; else ValueError."""
    if not (is_real(v) and math.isfinite(v) and (v >= 0 if allow_zero else v > 0)):
        what = "a finite number >= 0" if allow_zero else "a positive finite number"
        raise ValueError(f"{name} must be {what}, got {v!r}")
    return float(v)


def whole(name: str, v: Any, minimum: int = 1, hint: str = "") -> int:
    """`v` as an int when it is a whole number >= `minimum`; else ValueError, with `hint` after the message."""
    if not is_int(v) or v < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {v!r}{hint}")
    return int(v)


def fraction(name: str, v: Any) -> float:
    """`v` as a float when it is a number in [0, 1]; else ValueError."""
    if not (is_real(v) and 0 <= v <= 1):
        raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    return float(v)


def callable_name(f: Any) -> str:
    """The name a loss, metric or suggestion function is known by (a partial by its function's)."""
    f = f.func if isinstance(f, partial) else f
    return getattr(f, "__name__", None) or getattr(f, "name", None) or type(f).__name__


def loss_func(lf: Any) -> Any:
    """A loss function as the Learner takes it: None (inferred from the targets) or a callable instance."""
    if isinstance(lf, type):
        raise TypeError(f"loss_func is the class {lf.__name__}: pass an instance, loss_func={lf.__name__}()")
    if lf is not None and not callable(lf):
        raise TypeError(f"loss_func must be callable as loss_func(output, target), got {lf!r}")
    return lf


def metrics(ms: Any) -> list:
    """Metrics as a list of functions metric(output, target) -> number."""
    out = list(ms) if isinstance(ms, (list, tuple)) else [ms] if ms else []
    for m in out:
        if isinstance(m, type) or not callable(m):
            raise TypeError(
                f"each metric must be a function metric(output, target) -> number, got {m!r}; "
                "e.g. metrics=accuracy (from lrwidget import accuracy)"
            )
        if all(hasattr(m, a) for a in ("accumulate", "reset", "value")):
            raise TypeError(
                f"{callable_name(m)} is a fastai metric that accumulates over the whole validation set "
                "(Precision, F1Score, ...); lrwidget averages a function's value per batch, so it would be wrong "
                "here: pass a function metric(output, target) -> number"
            )
    return out


def mixed_precision(mp: Any) -> str | None:
    """None, 'bf16' or 'fp16'."""
    if mp not in (None, "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be None, 'bf16' or 'fp16', got {mp!r}")
    return mp


def num_processes(n: Any, device: Any) -> int:
    """`n` worker processes for a learner on `device` (a torch.device): one GPU each on CUDA, or the CPU."""
    import torch

    n = whole("num_processes", n)
    if n == 1:
        return n
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and n > gpus:
        raise ValueError(
            f"num_processes={n} trains on one GPU per process, but {gpus} are visible: "
            f"pass num_processes={gpus} (torch.cuda.device_count())"
        )
    if device.type not in ("cuda", "cpu"):
        raise ValueError(
            f"num_processes={n} runs on CUDA GPUs (NCCL) or on the CPU (gloo), not on {device.type}: pass "
            "num_processes=1, or device='cpu'"
        )
    return n


def loaders_for_processes(dls: Any) -> None:
    """TypeError unless the data are torch DataLoaders, which the worker processes can shard."""
    from torch.utils.data import DataLoader

    for name, dl in (("training", dls.train), ("validation", dls.valid)):
        if dl is not None and not isinstance(dl, DataLoader):
            raise TypeError(
                f"num_processes > 1 shards the data with a DistributedSampler, so the {name} data must be a "
                f"torch.utils.data.DataLoader over a Dataset, got {type(dl).__name__}"
            )
