"""The work of a fit, in whichever process the run goes: the schedule of its steps, then the one loop."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import loop
from .guard import StopSignal
from .optim import mom_key, set_wd
from .schedules import lr_per_group
from .schedules import one_cycle as one_cycle_schedule


def total(learn: Any, n_epoch: int) -> int:
    """The optimizer steps of `n_epoch` epochs of this process's training data."""
    return n_epoch * loop.steps_per_epoch(len(learn.dls.train), learn.accum_steps)


def fit(learn: Any, sig: StopSignal, n_epoch: int, per_group: np.ndarray, wd: float | None) -> None:
    """`n_epoch` epochs at the constant rates `per_group` (one per layer group)."""
    steps = total(learn, n_epoch)
    set_wd(learn.opt, wd)
    loop.train(learn, "fit", n_epoch, np.broadcast_to(per_group, (steps, len(per_group))), None, sig)


def one_cycle(
    learn: Any,
    sig: StopSignal,
    n_epoch: int,
    per_group: np.ndarray,
    div: float,
    div_final: float,
    pct_start: float,
    wd: float | None,
    moms: tuple[float, float, float],
) -> None:
    """fastai's one cycle over `n_epoch` epochs, peaking at `per_group` (one rate per layer group)."""
    lrs, mom = one_cycle_schedule(
        total(learn, n_epoch), per_group, div=div, div_final=div_final, pct_start=pct_start, moms=moms
    )
    set_wd(learn.opt, wd)
    loop.train(learn, "fit", n_epoch, lrs, mom if mom_key(learn.opt) else None, sig, lr_max=float(per_group[-1]))


def fine_tune(
    learn: Any,
    sig: StopSignal,
    epochs: int,
    base_lr: float,
    freeze_epochs: int,
    lr_mult: float,
    pct_start: float,
    div: float,
    div_final: float,
    wd: float | None,
    moms: tuple[float, float, float],
) -> None:
    """fastai's fine_tune: a cycle with the body frozen, then `epochs` of the whole model at discriminative rates."""
    learn.freeze()
    head = lr_per_group(slice(base_lr), len(learn.layer_groups))
    one_cycle(learn, sig, freeze_epochs, head, 25.0, div_final, 0.99, wd, moms)
    if learn.run.end_reason != "completed" or sig.is_set():  # a Stop after the first phase's last batch too
        return
    learn.unfreeze()
    body = lr_per_group(slice(base_lr / 2 / lr_mult, base_lr / 2), len(learn.layer_groups))
    one_cycle(learn, sig, epochs, body, div, div_final, pct_start, wd, moms)
