"""The one training loop (lr_find, fit, fit_one_cycle, fine_tune) and validation, over a Learner's parts."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .checks import callable_name
from .data import split_batch, to_device
from .errors import oom_hint
from .events import RunInfo, emit
from .guard import StopSignal
from .losses import check_loss_value, check_shapes, one_number, output_loss, prediction
from .optim import layer_index, mom_key

MAX_SKIPS = 50  # lr_find with fp16: steps in a row the grad scaler may skip before the gradients count as non-finite


class Stop(Exception):
    """Raised inside the loop to end a run early and quietly; its message is the end reason."""


def steps_per_epoch(n_batches: int, accum_steps: int) -> int:
    """Optimizer steps in an epoch of `n_batches`: a partial window at the end of the epoch is stepped too."""
    return math.ceil(n_batches / accum_steps)


def train(
    learn: Any,
    kind: str,
    n_epoch: int,
    lrs: np.ndarray,
    moms: np.ndarray | None,
    sig: StopSignal,
    validate: bool = True,
    check: Callable[[], str | None] | None = None,
    copy_on_disk: str = "",
    probe: tuple[int, int, str] | None = None,
    lr_max: float | None = None,
) -> None:
    """Optimizer step k uses lrs[k] (one per layer group) and moms[k]; validation each epoch. With
    `learn.accum_steps` = a, a step sums the gradients of a batches, each loss scaled by 1/a. `copy_on_disk`: where the
    run's copy of the state is when on disk (RunInfo.copy_on_disk); `probe`: which of a search's (or repeated lr_find's)
    runs this is (RunInfo.probe); `lr_max`: the rate asked for (RunInfo.lr_max; else the schedule's peak)."""
    model, opt, dl, rec, dev = learn.model, learn.opt, learn.dls.train, learn.recorder, learn.device
    groups = opt.param_groups
    if not any(p.requires_grad for g in groups for p in g["params"]):
        raise ValueError(
            "every parameter is frozen, so there is nothing to train: call learn.unfreeze(), or freeze_to(n) "
            "with n below the number of layer groups"
        )
    acc, n_batches, total = learn.accum_steps, len(dl), len(lrs)
    lr_rows = lrs[:, layer_index(opt)].tolist()  # one column per optimizer parameter group
    mom_list = moms.tolist() if moms is not None else None
    betas = mom_key(opt) == "betas"
    rec.reset(["epoch", "train_loss", "valid_loss", *map(callable_name, learn.metrics), "time"])
    learn.run = run = RunInfo(kind, n_epoch, steps_per_epoch(n_batches, acc), total, copy_on_disk=copy_on_disk)
    run.lr_max, run.probe = (lr_max if lr_max is not None else float(lrs[:, -1].max()) if total else None), probe
    autocast = _autocast(learn)
    scaler = torch.amp.GradScaler(dev.type) if learn.mixed_precision == "fp16" else None
    watch_skips = scaler is not None and check is not None  # lr_find: a step the scaler skips is run again
    own = _own_loss(learn)
    k, b, skips, win, error, non_blocking = 0, 0, 0, None, None, dev.type != "cpu"
    rank = learn.rank  # one of N processes: the ranks agree on a Stop, lr_find averages its loss
    together = rank.world > 1
    sampler = getattr(dl, "sampler", None)
    opt.zero_grad(set_to_none=True)
    emit(learn.observers, "fit_start", learn)
    try:
        with oom_hint():
            # lr_find's steps skipped by the fp16 scaler are run again: it goes on, epoch after epoch, to its total
            for epoch in range(n_epoch) if check is None else itertools.count():
                run.epoch, t0 = epoch, time.monotonic()
                model.train()
                if hasattr(sampler, "set_epoch"):  # a DistributedSampler: another shuffle each epoch
                    sampler.set_epoch(epoch)
                for i, batch in enumerate(dl):
                    if sig.is_set():
                        raise Stop(sig.reason)
                    if together and b % rank.stop_every == 0 and (why := rank.agreed_stop()):
                        raise Stop(why)
                    b += 1
                    if i % acc == 0:  # a window starts: its step's lr and momentum, its size
                        size = max(1, min(acc, n_batches - i))  # a loader longer than its len(): steps of 1
                        row = lr_rows[k]
                        for g, lr in zip(groups, row):
                            g["lr"] = lr
                        m = None
                        if mom_list is not None:
                            m = mom_list[k]
                            for g in groups:
                                if betas:
                                    g["betas"] = (m, g["betas"][1])
                                else:
                                    g["momentum"] = m
                        win = None
                    last = size == 1 or (i + 1) % acc == 0 or i + 1 == n_batches
                    # inside a window DDP keeps the gradients local: one all-reduce per step, at its last batch
                    sync = model.no_sync() if together and not last else contextlib.nullcontext()
                    with sync:
                        with autocast:
                            loss = batch_loss(learn, model, to_device(batch, dev, non_blocking), own, b == 1)[0]
                        scaled = loss / size if size > 1 else loss
                        if scaler is None:
                            scaled.backward()
                        else:
                            scaler.scale(scaled).backward()
                    win = loss.detach() if win is None else win + loss.detach()
                    if not last:
                        continue
                    if scaler is None:
                        opt.step()
                    else:
                        scale = scaler.get_scale() if watch_skips else 0.0  # a sync, in lr_find only
                        scaler.step(opt)
                        scaler.update()
                    opt.zero_grad(set_to_none=True)
                    step_loss, win = (win / size if size > 1 else win), None
                    if together and check is not None:
                        step_loss = rank.mean(step_loss)  # lr_find: every rank decides on the same curve
                    if watch_skips and scaler.get_scale() < scale and torch.isfinite(step_loss):
                        skips, run.skipped = skips + 1, run.skipped + 1  # fp16 overflow: the same lr again
                        if skips >= MAX_SKIPS:
                            raise Stop("non-finite gradients")
                        continue
                    skips = 0
                    rec.add_batch(step_loss, row[-1], m)  # stays on the device: no sync per step
                    k += 1
                    emit(learn.observers, "batch_end", learn)
                    if check is not None and (reason := check()):
                        raise Stop(reason)
                    if k >= total:
                        break
                if win is not None:  # a loader shorter than its len() left a window open: not carried over
                    opt.zero_grad(set_to_none=True)
                if b == 0:
                    raise ValueError("the training data produced no batches: check the DataLoader and its dataset")
                nan_row = [math.nan] * (1 + len(learn.metrics))
                rec.add_epoch(
                    [rec.smooth_loss, *(evaluate(learn, sig) if validate else nan_row)], time.monotonic() - t0
                )
                emit(learn.observers, "epoch_end", learn)
                if k >= total:
                    break
        run.end_reason = "completed"
    except Stop as s:
        run.end_reason = str(s)
    except KeyboardInterrupt:  # a second Ctrl-C on the main thread, or one that no handler turned into a Stop
        run.end_reason = "interrupted"
        raise
    except BaseException as e:
        run.end_reason, error = "error", e
        raise
    finally:
        rec.flush()
        opt.zero_grad(set_to_none=True)
        emit(learn.observers, "fit_end", learn, error)


def _own_loss(learn: Any) -> bool:
    """True when the model computes its own loss: no loss_func, and its forward takes `labels` (Hugging Face)."""
    return learn.loss_func is None and takes_labels(learn.model)


def takes_labels(model: torch.nn.Module) -> bool:
    """True when the model's forward has a `labels` parameter (through DDP and torch.compile's wrappers)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            break
        model = inner
    try:
        return "labels" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # a forward with no signature to read (a C extension)
        return False


def batch_loss(learn: Any, model: Any, b: Any, own: bool, first: bool) -> tuple[torch.Tensor, Any, Any]:
    """The loss of a batch already on the device, what the metrics see of the output, and the target.
    On a run's first batch the output and the loss are checked before they are used."""
    if own and isinstance(b, Mapping) and "labels" in b:  # the whole dict goes in: the model computes the loss
        out = model(**b)
        loss = output_loss(out)
        if first:
            check_loss_value(model, loss, own=True)
        pred = out[1] if isinstance(out, (tuple, list)) and len(out) > 1 else prediction(out)  # (loss, logits, ...)
        return loss, pred, b["labels"]
    xs, kw, y = split_batch(b)
    out = model(*xs, **kw)
    lf, on_logits = learn.loss_for(y)  # lrwidget's own choice gets the logits of a Hugging Face output
    pred = prediction(out)
    arg = pred if on_logits else out  # a loss_func the user gave gets the output as the model made it
    if first:
        check_shapes(lf, arg, y)
    loss = lf(arg, y)  # the loss function's own errors reach the user as it raised them
    if first:
        check_loss_value(lf, loss)
    return loss, pred, y


def evaluate(learn: Any, sig: StopSignal | None, batches: Any = None) -> list[float]:
    """Validation loss and metrics (of `batches`, else the validation data), averaged over samples; one device read at
    the end; `sig` may end it."""
    batches = learn.dls.valid if batches is None else batches
    if batches is None:
        return [math.nan] * (1 + len(learn.metrics))
    model, dev, own = learn.model, learn.device, _own_loss(learn)
    together = learn.rank.world > 1
    if together:  # not through DDP: the ranks' shards differ in length, DDP's forward syncs
        model = model.module
    model.eval()
    sums, n = None, 0
    with torch.no_grad(), _autocast(learn):
        for i, batch in enumerate(batches):
            if sig is not None and sig.is_set():
                raise Stop(sig.reason)
            loss, pred, y = batch_loss(learn, model, to_device(batch, dev), own, first=i == 0)
            bs = y.shape[0] if isinstance(y, torch.Tensor) and y.ndim else len(y)
            vals = [one_number(learn.loss_func or model, loss, dev)]
            vals += [one_number(f, f(pred, y), dev) for f in learn.metrics]
            vals = torch.stack(vals) * bs
            sums = vals if sums is None else sums + vals
            n += bs
    if together:  # sample-weighted over every rank's shard, as one process on all the data
        sums = learn.rank.sum(sums if sums is not None else torch.zeros(1 + len(learn.metrics), device=dev))
        n = int(learn.rank.sum(torch.tensor([n], device=dev)).item())
    if sums is None or n == 0:
        raise ValueError("the validation data produced no batches")
    return (sums.cpu().double() / n).tolist()


def _autocast(learn: Any) -> contextlib.AbstractContextManager:
    if learn.mixed_precision is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if learn.mixed_precision == "bf16" else torch.float16
    return torch.autocast(learn.device.type, dtype=dtype)
