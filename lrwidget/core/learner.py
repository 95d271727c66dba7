"""Learner: a model, its data, loss and optimizer, its public methods, and the one training loop."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..state import snapshot as snapshots
from . import checkpoint, checks, loop
from . import ranks as distributed
from .checks import positive, whole
from .data import DataLoaders, default_device
from .events import Observer, RunInfo
from .find_result import LRFindResult, apply_suggest_funcs, check_suggest_funcs, warn_missing
from .hold import RunGuard, StopSignal
from .losses import MSELossFlat, oom_hint
from .optim import (
    by_layer_group,
    default_opt_func,
    mom_key,
    norm_bias_params,
    one_group,
    param_groups,
    set_wd,
)
from .optim import freeze_to as _freeze_to
from .optim import split as split_groups
from .recorder import Recorder
from .schedules import check_moms, check_one_cycle, lr_per_group, lr_range, one_cycle
from .suggest import suggest_lrs

__all__ = ["Learner", "LRFindResult", "Observer", "RunInfo", "RunGuard", "MSELossFlat", "MIN_NUM_IT"]
__all__ += ["default_opt_func", "norm_bias_params", "param_groups"]  # where they were before optim.py

# the smallest num_it whose curve keeps 2 points once the first num_it//10 and the last 5 are dropped
MIN_NUM_IT = 7
LR_FIND_RESTORES = "the model, optimizer and random state are as before it"


class Learner:
    """A model with its data, loss and optimizer, trained by one loop (lr_find, fit, fit_one_cycle)."""

    # what LRWidget shows of this learner (the fastai adapter says more): see interface.Driven
    lr_find_code_args = ""
    lr_find_restores = LR_FIND_RESTORES
    note = ""

    def __init__(
        self,
        dls: DataLoaders | Sequence,
        model: nn.Module,
        loss_func: Callable | None = None,
        opt_func: Callable | None = None,
        metrics: Callable | Sequence[Callable] | None = None,
        splitter: Callable[[nn.Module], Sequence] | None = None,
        wd: float | None = None,
        device: str | torch.device | None = None,
        mixed_precision: str | None = None,
        lr: float = 1e-3,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
        wd_bn_bias: bool = False,
        train_bn: bool = True,
        num_processes: int = 1,
        accum_steps: int = 1,
        snapshot: str = "auto",
        snapshot_dir: str | Path | None = None,
    ):
        if not isinstance(dls, DataLoaders):
            if not (isinstance(dls, (tuple, list)) and 1 <= len(dls) <= 2):
                raise TypeError(f"dls must be DataLoaders(train_dl, valid_dl), got {type(dls).__name__}")
            dls = DataLoaders(*dls)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.mixed_precision = checks.mixed_precision(mixed_precision)
        self.accum_steps = accum_steps
        # where exact copies of the state go (lr_find's, a widget's start): snapshot.py says how "auto" chooses
        self.snapshot, self.snapshot_dir = snapshots.check_mode(snapshot), snapshots.check_dir(snapshot_dir)
        self.loss_func = checks.loss_func(loss_func)
        self._default_loss = False  # True once the loop chose the loss (it then gets the logits of an HF output)
        check_moms(moms)
        self.dls = dls
        self.device = torch.device(device) if device is not None else default_device()
        self.num_processes = num_processes
        if self.num_processes > 1:
            distributed.check_loaders(dls)
        self.model = model.to(self.device)
        self.metrics = checks.metrics(metrics)
        self.splitter = splitter or one_group
        self.lr, self.moms = lr, moms
        self._default_opt = opt_func is None  # the workers of num_processes > 1 make it for their own device
        self.opt_func = opt_func or partial(default_opt_func, device=self.device)
        self.wd_bn_bias, self.train_bn = wd_bn_bias, train_bn
        self.opt = self.opt_func(param_groups(self.model, split_groups(self.splitter(self.model)), wd_bn_bias))
        set_wd(self.opt, None if wd is None else positive("wd", wd, allow_zero=True))
        self.recorder = Recorder()
        self.observers: list[Observer] = []
        self.run: RunInfo | None = None
        self.guard = RunGuard()
        self._pool: Any = None  # num_processes > 1: the worker processes, kept between runs (distributed.Workers)
        self._rank: Any = None  # in a worker: this process's place in the group (distributed.Rank)
        self._seeds = 0  # runs in worker processes so far: each shuffles from its own seed

    def close(self) -> None:
        """End the worker processes kept between runs (num_processes > 1); nothing for one process."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @property
    def num_processes(self) -> int:
        """The processes each run trains in (1: this one; N > 1: N workers with DDP, one GPU each on CUDA)."""
        return self._num_processes

    @num_processes.setter
    def num_processes(self, n: int) -> None:
        self._num_processes = checks.num_processes(n, self.device)

    @property
    def accum_steps(self) -> int:
        """Batches whose gradients one optimizer step sums (1: a step every batch); the schedules count steps."""
        return self._accum_steps

    @accum_steps.setter
    def accum_steps(self, k: int) -> None:
        self._accum_steps = whole("accum_steps", k)

    # -- layer groups ---------------------------------------------------------------------------

    @property
    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters of each layer group (the splitter's), which `slice` learning rates spread over."""
        return [[p for ps in gs for p in ps] for gs in by_layer_group(self.opt, "params")]

    @property
    def layer_lrs(self) -> list[float]:
        """The current learning rate of each layer group (what `slice(a, b)` set)."""
        return [gs[0] for gs in by_layer_group(self.opt, "lr")]

    def freeze_to(self, n: int) -> None:
        """Train only layer groups from `n` on, as fastai (norm layers too, with `train_bn`); clears the opt state."""
        _freeze_to(self.model, self.layer_groups, n, self.train_bn)
        self.opt.state.clear()

    def freeze(self) -> None:
        """Train only the last parameter group (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every parameter group."""
        self.freeze_to(0)

    # -- runs ------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while lr_find, a fit, validate or load runs on this learner (from any thread)."""
        return self.guard.busy

    def stop(self) -> None:
        """Ask the running lr_find or fit to end at the next batch boundary (thread-safe; nothing when idle)."""
        self.guard.stop()

    def fit(self, n_epoch: int, lr: float | slice | None = None, wd: float | None = None) -> None:
        """Train `n_epoch` epochs at a constant learning rate (float, slice or one per layer group)."""
        with self.guard("fit") as sig:
            n_epoch, per_group, total = self._plan(n_epoch, lr, "lr", wd)
            if self.num_processes > 1:
                return distributed.run(self, "fit", (n_epoch, lr, wd), sig)
            set_wd(self.opt, wd)
            loop.train(self, "fit", n_epoch, np.broadcast_to(per_group, (total, len(per_group))), None, sig)

    def fit_one_cycle(
        self,
        n_epoch: int,
        lr_max: float | slice | None = None,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        wd: float | None = None,
        moms: tuple[float, float, float] | None = None,
    ) -> None:
        """Train with fastai's one-cycle policy: cosine lr warm-up to `lr_max` then annealing, momentum inverse."""
        with self.guard("fit_one_cycle") as sig:
            if self.num_processes > 1:
                self._plan(n_epoch, lr_max, "lr_max", wd, stacklevel=4)
                check_one_cycle(div, div_final, pct_start, self.moms if moms is None else moms)
                return distributed.run(
                    self, "fit_one_cycle", (n_epoch, lr_max, div, div_final, pct_start, wd, moms), sig
                )
            self._one_cycle(n_epoch, lr_max, div, div_final, pct_start, wd, moms, sig)

    def _one_cycle(
        self,
        n_epoch: int,
        lr_max: Any,
        div: float,
        div_final: float,
        pct_start: float,
        wd: float | None,
        moms: tuple[float, float, float] | None,
        sig: StopSignal,
    ) -> None:
        """One cycle in the run that holds `sig`; every argument is checked before anything changes."""
        n_epoch, per_group, total = self._plan(n_epoch, lr_max, "lr_max", wd, stacklevel=5)
        lrs, mom = one_cycle(
            total,
            per_group,
            div=div,
            div_final=div_final,
            pct_start=pct_start,
            moms=self.moms if moms is None else moms,
        )
        set_wd(self.opt, wd)
        loop.train(self, "fit", n_epoch, lrs, mom if mom_key(self.opt) else None, sig)

    def fine_tune(
        self,
        epochs: int,
        base_lr: float = 2e-3,
        freeze_epochs: int = 1,
        lr_mult: float = 100,
        pct_start: float = 0.3,
        div: float = 5.0,
        div_final: float = 1e5,
        wd: float | None = None,
        moms: tuple[float, float, float] | None = None,
    ) -> None:
        """fastai's fine_tune: a cycle with the body frozen, then `epochs` at slice(base_lr/2/lr_mult, base_lr/2)."""
        with self.guard("fine_tune") as sig:
            whole("epochs", epochs)
            whole("freeze_epochs", freeze_epochs)
            base_lr, lr_mult = positive("base_lr", base_lr), positive("lr_mult", lr_mult)
            moms = self.moms if moms is None else moms
            check_one_cycle(div, div_final, pct_start, moms)  # the first phase's own div and pct_start are fixed
            if wd is not None:
                positive("wd", wd, allow_zero=True)
            if self.num_processes > 1:
                args = (epochs, base_lr, freeze_epochs, lr_mult, pct_start, div, div_final, wd, moms)
                return distributed.run(self, "fine_tune", args, sig)
            self.freeze()
            self._one_cycle(freeze_epochs, slice(base_lr), 25.0, div_final, 0.99, wd, moms, sig)
            if self.run.end_reason != "completed" or sig.is_set():  # a Stop after the first phase's last batch too
                return
            self.unfreeze()
            self._one_cycle(epochs, slice(base_lr / 2 / lr_mult, base_lr / 2), div, div_final, pct_start, wd, moms, sig)

    def validate(self) -> list[float]:
        """The validation loss and metrics of the model as it is, as fastai's: [valid_loss, *metrics]."""
        with self.guard("validate"), oom_hint():
            if self.dls.valid is None:
                raise ValueError("there is no validation data: build the learner with DataLoaders(train_dl, valid_dl)")
            modes = [(m, m.training) for m in self.model.modules()]
            try:
                return loop.evaluate(self, None)
            finally:
                for m, training in modes:
                    m.training = training

    def lr_find(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10,
        num_it: int = 100,
        stop_div: bool = True,
        show_plot: bool = True,
        suggest_funcs: Callable | Sequence[Callable] | None = None,
    ) -> LRFindResult:
        """The learning-rate range test; the model, optimizer and random state are restored after it, always."""
        with self.guard("lr_find") as sig:  # held before the copy: a Stop while the state is copied still counts
            funcs = check_suggest_funcs(suggest_funcs)
            hint = (
                ": the suggestions drop the first num_it//10 and the last 5 steps, so fewer steps leave nothing to "
                "suggest from (100 is the default)"
            )
            num_it = whole("num_it", num_it, MIN_NUM_IT, hint)
            lrs = lr_range(start_lr, end_lr, num_it)
            if self.num_processes > 1:  # the kernel's learner is untouched: the workers ran on copies
                res = distributed.run(self, "lr_find", (start_lr, end_lr, num_it, stop_div, False, suggest_funcs), sig)
                self.recorder.lr_find_result = res
                if show_plot:
                    self.recorder.show_lr_find()
                    warn_missing(res, self.lr, stacklevel=3)
                return res
            rec, best = self.recorder, math.inf

            def check() -> str | None:
                nonlocal best
                s = rec.smooth_loss
                if not math.isfinite(s):
                    return "non-finite loss"
                best = min(best, s)
                return "diverged" if stop_div and s > 4 * best else None

            saved = self.take_state()
            try:
                n_epoch = math.ceil(num_it / loop.steps_per_epoch(len(self.dls.train), self.accum_steps))
                per_group = np.repeat(lrs[:, None], len(self.layer_groups), axis=1)
                said = snapshots.said(saved)
                loop.train(self, "lr_find", n_epoch, per_group, None, sig, validate=False, check=check, snapshot=said)
            finally:
                try:
                    self.restore_state(saved)
                finally:
                    snapshots.discard(saved)
            end = self.run.end_reason
            s = suggest_lrs(rec.lrs, rec.losses, num_it, end)
            res = LRFindResult(
                rec.lrs, rec.losses, rec.raw_losses, s["lr_min"], s["lr_steep"], s["valley"], s["slide"],
                s.reasons, s.points, num_it, end,
            )  # fmt: skip
            if funcs is not None:
                res = apply_suggest_funcs(res, funcs)
            rec.lr_find_result = res
            if show_plot:  # the curve in a notebook, and a warning of each suggestion that came out None
                rec.show_lr_find()
                warn_missing(res, self.lr, stacklevel=3)
            return res

    # -- exact state copies ----------------------------------------------------------------------------

    def take_state(self) -> dict | snapshots.DiskCopy:
        """An exact copy of the weights, optimizer, module modes, grads and every random state: a dict in host memory,
        or a snapshot.DiskCopy (its tensors in files; `close()` deletes them), as `self.snapshot` says."""
        copies = 1 if self._rank is None else self._rank.world  # every rank of this machine takes its own at once
        saved = snapshots.take(
            self.model, self.opt, self.dls.train, self.device, self.snapshot, self.snapshot_dir, copies
        )
        # with num_processes > 1 the workers' shuffle comes from the learner's run count: part of its random state
        saved["seeds"] = self._seeds
        return saved

    def restore_state(self, saved: dict | snapshots.DiskCopy) -> None:
        """Put back a copy made by `take_state` (which stays as it was: it can be put back again)."""
        snapshots.restore(saved, self.model, self.opt, self.dls.train)
        self._seeds = saved["seeds"]

    # -- saving -----------------------------------------------------------------------------------

    def save(self, path: str | Path, with_opt: bool = True) -> Path:
        """Save the weights (and optimizer state) to `path` (`.pth` added when it has no suffix)."""
        return checkpoint.save(self.model, self.opt, path, with_opt)

    def load(self, path: str | Path, with_opt: bool = True, strict: bool = True) -> Learner:
        """Load weights (and optimizer state) saved by `save`; tensors only (weights_only=True)."""
        with self.guard("load"):
            checkpoint.load(self.model, self.opt, self.device, path, with_opt, strict)
        return self

    # -- the training loop -------------------------------------------------------------------------

    def _plan(self, n_epoch: int, lr: Any, name: str, wd: float | None, stacklevel: int = 4) -> tuple:
        """Check a fit's arguments, changing nothing: the epochs, one lr per layer group, the batches in all."""
        n_epoch = whole("n_epoch", n_epoch)
        # stacklevel: the warning for a reversed slice names the user's line that called fit or fit_one_cycle
        per_group = lr_per_group(
            self.lr if lr is None else lr, len(self.layer_groups), name=name, stacklevel=stacklevel
        )
        if wd is not None:
            positive("wd", wd, allow_zero=True)
        return n_epoch, per_group, n_epoch * loop.steps_per_epoch(len(self.dls.train), self.accum_steps)
