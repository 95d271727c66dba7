"""Learner: a model, its data, loss and optimizer, and its public methods; how its runs go is its runner's business."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..parallel.rank import Alone
from ..state import snapshot as snapshots
from ..state.copies import clone_cpu
from ..state.disk import DiskCopy
from . import checkpoint, checks, fits, loop, range_test, search
from .checks import positive, whole
from .data import DataLoaders, default_device
from .errors import oom_hint
from .events import Observer, RunInfo
from .find_result import LRFindResult, apply_suggest_funcs, check_suggest_funcs, warn_missing
from .guard import RunGuard
from .losses import MSELossFlat, default_loss_for
from .optim import (
    by_layer_group,
    default_opt_func,
    one_group,
    param_groups,
    set_wd,
)
from .optim import freeze_to as _freeze_to
from .optim import split as split_groups
from .range_test import MIN_NUM_IT
from .recorder import Recorder
from .runners import Call, runner_for
from .schedules import check_moms, check_one_cycle, lr_per_group, lr_range
from .search import LRSearchResult

__all__ = ["Learner", "LRFindResult", "MSELossFlat", "MIN_NUM_IT"]

LR_FIND_RESTORES = "the model, optimizer and random state are as before it"


class Learner:
    """A model with its data, loss and optimizer, trained by one loop (lr_find, fit, fit_one_cycle)."""

    # the work of each run, in whichever process it goes (runners.py): functions of the learner, a subclass's
    # overrides included
    _fit, _one_cycle, _fine_tune = fits.fit, fits.one_cycle, fits.fine_tune
    _lr_find, _lr_search = range_test.run, search.run

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
        self._default_loss = False  # True once lrwidget chose the loss (it then gets the logits of an HF output)
        check_moms(moms)
        self.dls = dls
        self.device = torch.device(device) if device is not None else default_device()
        self._runner: Any = None  # how the runs go: here, or in N worker processes (set by num_processes)
        self.num_processes = num_processes  # checked before the model moves
        self.model = model.to(self.device)
        self.metrics = checks.metrics(metrics)
        self.splitter = splitter or one_group
        self.lr, self.moms = lr, moms
        self._default_opt = opt_func is None  # made again for another device (a worker's GPU)
        self.opt_func = opt_func or partial(default_opt_func, device=self.device)
        self.wd_bn_bias, self.train_bn = wd_bn_bias, train_bn
        self.opt = self._make_opt()
        set_wd(self.opt, None if wd is None else positive("wd", wd, allow_zero=True))
        self._local()

    def _local(self) -> None:
        """What belongs to this process only: its runs, their record and observers, its place among processes."""
        self.recorder = Recorder()
        self.observers: list[Observer] = []
        self.run: RunInfo | None = None
        self.guard = RunGuard()
        self.rank: Any = Alone()  # this process's place among those that train the model (a worker's: one of N)

    def _make_opt(self) -> torch.optim.Optimizer:
        return self.opt_func(param_groups(self.model, split_groups(self.splitter(self.model)), self.wd_bn_bias))

    def __getstate__(self) -> dict:
        """What travels to the worker processes (and what copy.deepcopy copies): the model (on the CPU), the
        optimizer's state, the settings and the data, and a subclass's own attributes; not this process's runs."""
        state = {k: v for k, v in self.__dict__.items() if k not in _LOCAL}
        if self.device.type != "cpu":
            state["model"] = copy.deepcopy(self.model).cpu()
        state["opt"] = clone_cpu(self.opt.state_dict())  # made again for the model over there, then loaded
        return state

    def __setstate__(self, state: dict) -> None:
        """A learner of this class from `__getstate__`'s state, on `state['device']`, its runs its own."""
        state = dict(state)
        opt_state = state.pop("opt")
        self.__dict__.update(state)
        if self._default_opt:
            self.opt_func = partial(default_opt_func, device=self.device)
        self.model = self.model.to(self.device)
        self.opt = self._make_opt()
        self.opt.load_state_dict(opt_state)
        self._local()
        self._runner = None
        self.num_processes = self._num_processes

    def close(self) -> None:
        """End the worker processes kept between runs (num_processes > 1); nothing for one process."""
        self._runner.close()

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the worker processes running now (none for one process, or before the first run)."""
        return self._runner.pids()

    @property
    def num_processes(self) -> int:
        """The processes each run trains in (1: this one; N > 1: N workers with DDP, one GPU each on CUDA)."""
        return self._num_processes

    @num_processes.setter
    def num_processes(self, n: int) -> None:
        n = checks.num_processes(n, self.device)
        if n > 1:
            checks.loaders_for_processes(self.dls)
        if self._runner is None or n != self._num_processes:
            if self._runner is not None:
                self._runner.close()
            self._runner = runner_for(n)
        self._num_processes = n

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
            n_epoch, per_group = self._plan(n_epoch, lr, "lr", wd)
            self._runner.run(self, sig, Call("fit", type(self)._fit, (n_epoch, per_group, wd)))

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
            n_epoch, per_group = self._plan(n_epoch, lr_max, "lr_max", wd)
            moms = self.moms if moms is None else moms
            check_one_cycle(div, div_final, pct_start, moms)
            args = (n_epoch, per_group, div, div_final, pct_start, wd, moms)
            self._runner.run(self, sig, Call("fit", type(self)._one_cycle, args))

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
            args = (epochs, base_lr, freeze_epochs, lr_mult, pct_start, div, div_final, wd, moms)
            self._runner.run(self, sig, Call("fit", type(self)._fine_tune, args))

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
        repeats: int = 1,
    ) -> LRFindResult:
        """The learning-rate range test; the model, optimizer and random state are restored after it, always.
        `repeats` > 1: that many tests from the same state, each with its own batch order; the curve is their median,
        `band` their lowest and highest loss, the suggestions are the median's, `spread` how far each moved."""
        with self.guard("lr_find") as sig:  # held before the copy: a Stop while the state is copied still counts
            funcs = check_suggest_funcs(suggest_funcs)
            hint = (
                ": the suggestions drop the first num_it//10 and the last 5 steps, so fewer steps leave nothing to "
                "suggest from (100 is the default)"
            )
            num_it = whole("num_it", num_it, MIN_NUM_IT, hint)
            lrs = lr_range(start_lr, end_lr, num_it)
            repeats = whole("repeats", repeats)
            call = Call("lr_find", type(self)._lr_find, (lrs, num_it, bool(stop_div), repeats), changes_state=False)
            res = self._runner.run(self, sig, call)
            if funcs is not None:
                res = apply_suggest_funcs(res, funcs)
            self.recorder.lr_find_result = res
            if show_plot:  # the curve in a notebook, and a warning of each suggestion that came out None
                self.recorder.show_lr_find()
                warn_missing(res, self.lr, stacklevel=3)
            return res

    def lr_search(self, epochs: int = 5, budget: float = 1.5, **options: Any) -> LRSearchResult:
        """The rate for `fit_one_cycle(epochs, best)`, from short one-cycle fits from this state at rates across the
        lr_find curve's usable range (search.py says how); they cost at most `budget` fits' training batches, and
        the learner ends exactly as it began. Options: sweep, decades, progress, find (an LRFindResult to use)."""
        with self.guard("lr_search") as sig:
            epochs, budget, options = search.check(epochs, budget, options)
            find = options.pop("find", None) or self.recorder.lr_find_result
            call = Call("lr_search", type(self)._lr_search, (epochs, budget, find, options), changes_state=False)
            res = self._runner.run(self, sig, call)
            if res.find_steps:  # it ran lr_find: the learner has that result now, as after lr_find
                self.recorder.lr_find_result = res.find
            return res

    # -- exact state copies ----------------------------------------------------------------------------

    def take_state(self) -> dict | DiskCopy:
        """An exact copy of the weights, optimizer, module modes, grads and every random state: a dict in host memory,
        or a snapshot.DiskCopy (its tensors in files; `close()` deletes them), as `self.snapshot` says."""
        # every rank of this machine takes its own copy at once: "auto" counts them all against the memory
        return snapshots.take(
            self.model, self.opt, self.dls.train, self.device, self.snapshot, self.snapshot_dir, self.rank.world
        )

    def restore_state(self, saved: dict | DiskCopy) -> None:
        """Put back a copy made by `take_state` (which stays as it was: it can be put back again)."""
        snapshots.restore(saved, self.model, self.opt, self.dls.train)

    def loss_for(self, y: Any) -> tuple[Callable, bool]:
        """The loss function for targets like `y`, and whether it gets the model's logits (lrwidget chose it: a
        Hugging Face output's `logits`) rather than the output as the model made it (the user's loss_func)."""
        if self.loss_func is None:
            self.loss_func, self._default_loss = default_loss_for(y), True
        return self.loss_func, self._default_loss

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

    def _plan(self, n_epoch: int, lr: Any, name: str, wd: float | None) -> tuple[int, np.ndarray]:
        """Check a fit's arguments, changing nothing: the epochs, and one lr per layer group."""
        n_epoch = whole("n_epoch", n_epoch)
        # stacklevel 4: the warning for a reversed slice names the user's line that called fit or fit_one_cycle
        per_group = lr_per_group(self.lr if lr is None else lr, len(self.layer_groups), name=name, stacklevel=4)
        if wd is not None:
            positive("wd", wd, allow_zero=True)
        return n_epoch, per_group


# this process's own: its runs, their record and observers, where they run (made afresh by __setstate__)
_LOCAL = ("recorder", "observers", "run", "guard", "rank", "_runner")
