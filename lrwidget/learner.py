"""Learner: a model, its data, loss and optimizer, and one training loop for lr_find, fit and fit_one_cycle."""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import DataLoaders, default_device, split_batch, to_device
from .find_result import LRFindResult, apply_suggest_funcs, check_suggest_funcs
from .recorder import Recorder
from .schedules import check_moms, check_one_cycle, lr_per_group, lr_range, one_cycle
from .suggest import suggest_lrs

__all__ = [
    "Learner",
    "LRFindResult",
    "Observer",
    "RunInfo",
    "RunGuard",
    "MSELossFlat",
    "MIN_NUM_IT",
    "norm_bias_params",
    "param_groups",
]

SAVE_FORMAT = "lrwidget.learner/1"
IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")


class Observer:
    """Receives the Learner's events; override what you need. Called on the training thread."""

    def fit_start(self, learn: Learner) -> None: ...
    def batch_end(self, learn: Learner) -> None: ...
    def epoch_end(self, learn: Learner) -> None: ...
    def fit_end(self, learn: Learner, error: BaseException | None) -> None: ...


@dataclass
class RunInfo:
    """What the Learner is running: kind ('lr_find' or 'fit'), its size and where it is."""

    kind: str
    n_epoch: int
    n_iter: int  # training batches per epoch
    total: int  # training batches planned in all
    epoch: int = 0
    start: float = field(default_factory=time.monotonic)
    end_reason: str = ""  # 'completed', 'stopped', 'diverged', 'non-finite loss' or 'error'

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.start


# the smallest num_it whose curve keeps 2 points once the first num_it//10 and the last 5 are dropped
MIN_NUM_IT = 7


def _check_positive(name: str, v: Any, allow_zero: bool = False) -> float:
    ok = (
        isinstance(v, numbers.Real)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and (v >= 0 if allow_zero else v > 0)
    )
    if not ok:
        what = "a finite number >= 0" if allow_zero else "a positive finite number"
        raise ValueError(f"{name} must be {what}, got {v!r}")
    return float(v)


def _check_n_epoch(n_epoch: Any, name: str = "n_epoch") -> int:
    if not isinstance(n_epoch, numbers.Integral) or isinstance(n_epoch, bool) or n_epoch < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {n_epoch!r}")
    return int(n_epoch)


def _mom_key(opt: torch.optim.Optimizer) -> str | None:
    g = opt.param_groups[0]
    return "betas" if "betas" in g else "momentum" if "momentum" in g else None


def _clone_cpu(o: Any) -> Any:
    """A deep copy with every tensor copied to host memory."""
    if isinstance(o, torch.Tensor):
        return o.detach().to("cpu", copy=True)
    if isinstance(o, dict):
        return {k: _clone_cpu(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return type(o)(_clone_cpu(v) for v in o)
    return copy.deepcopy(o)


def _loader_generators(dl: Any) -> list[torch.Generator]:
    """The random generators a loader draws its shuffling from, where it has its own."""
    found = []
    for obj in (dl, getattr(dl, "sampler", None), getattr(getattr(dl, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found


NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)


def norm_bias_params(model: nn.Module) -> list[nn.Parameter]:
    """fastai's norm_bias_params: every parameter of a norm layer, and every bias (kept out of weight decay)."""
    if isinstance(model, NORM_TYPES):
        return list(model.parameters())
    out = [p for c in model.children() for p in norm_bias_params(c)]
    bias = getattr(model, "bias", None)
    if isinstance(bias, nn.Parameter):
        out.append(bias)
    return out


def param_groups(model: nn.Module, layer_groups: Sequence[Sequence[nn.Parameter]], wd_bn_bias: bool) -> list[dict]:
    """Optimizer parameter groups: per layer group, the decayed parameters, then (unless `wd_bn_bias`) the norm
    and bias parameters with weight_decay 0, as fastai does. Each group's "layer_group" says which it belongs to."""
    exempt = set() if wd_bn_bias else {id(p) for p in norm_bias_params(model)}
    groups = []
    for i, ps in enumerate(layer_groups):
        decay, rest = [p for p in ps if id(p) not in exempt], [p for p in ps if id(p) in exempt]
        if decay or not rest:
            groups.append({"params": decay, "layer_group": i})
        if rest:
            groups.append({"params": rest, "layer_group": i, "weight_decay": 0.0, "wd_exempt": True})
    return groups


def _layer_groups(groups: Any) -> list[list[nn.Parameter]]:
    """The splitter's output as lists of parameters, refused with a clear message when it is not that."""
    how = (
        "the splitter must return a list of parameter lists, one per layer group, e.g. "
        "lambda m: [list(m[0].parameters()), list(m[1].parameters())]"
    )
    if isinstance(groups, (torch.Tensor, nn.Module)) or not isinstance(groups, Iterable):
        raise TypeError(f"{how}; got {type(groups).__name__}")
    out = []
    for g in groups:
        if isinstance(g, torch.Tensor) or not isinstance(g, Iterable):
            raise TypeError(f"{how}; got a list holding {type(g).__name__} (wrap it: [list_of_params])")
        g = list(g)
        bad = [type(p).__name__ for p in g if not isinstance(p, nn.Parameter)]
        if bad:
            raise TypeError(f"{how}; a group holds {bad[0]}, not nn.Parameter (use module.parameters())")
        out.append(g)
    if not any(out):
        raise ValueError(f"the splitter gave no parameters: {how}")
    return out


def default_opt_func(params: Any, device: torch.device | None = None) -> torch.optim.Optimizer:
    """fastai's default optimizer: AdamW, betas (0.9, 0.99), eps 1e-5, decoupled weight decay 0.01."""
    fused = device is not None and device.type == "cuda"
    return torch.optim.AdamW(
        params, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01, **({"fused": True} if fused else {})
    )


class MSELossFlat(nn.MSELoss):
    """fastai's MSELossFlat: mean squared error over the flattened output and target, so (N, 1) meets (N,)."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return super().forward(out.reshape(-1), y.reshape(-1))


def default_loss_for(y: Any) -> nn.Module:
    """Cross-entropy for integer class targets, fastai's flattened mean squared error for float targets."""
    if isinstance(y, torch.Tensor) and y.is_floating_point():
        return MSELossFlat()
    return nn.CrossEntropyLoss()


def _loss_name(f: Any) -> str:
    return type(f).__name__ if isinstance(f, nn.Module) else getattr(f, "__name__", repr(f))


def _metric_name(m: Any) -> str:
    m = m.func if isinstance(m, partial) else m  # partial(top_k_accuracy, k=3) is top_k_accuracy
    return getattr(m, "__name__", None) or getattr(m, "name", None) or type(m).__name__


class _Stop(Exception):
    """Raised inside the loop to end a run early and quietly."""


class RunGuard:
    """One run at a time on a learner: a second lr_find or fit (another widget, a cell typed meanwhile) would step
    the same model and optimizer and corrupt both runs, so it is refused while the first runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.kind = ""

    @property
    def busy(self) -> bool:
        """True while a run holds the learner."""
        return self._lock.locked()

    @contextlib.contextmanager
    def __call__(self, kind: str) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(
                f"this learner is busy with {self.kind or 'another run'} (in a widget or another "
                f"thread), so {kind} cannot start: wait for it to end, or call learn.stop()"
            )
        self.kind = kind
        try:
            yield
        finally:
            self.kind = ""
            self._lock.release()


class Learner:
    """A model with its data, loss and optimizer, trained by one loop (lr_find, fit, fit_one_cycle)."""

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
    ):
        if not isinstance(dls, DataLoaders):
            if isinstance(dls, (tuple, list)) and 1 <= len(dls) <= 2:
                dls = DataLoaders(*dls)
            else:
                raise TypeError(f"dls must be DataLoaders(train_dl, valid_dl), got {type(dls).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if mixed_precision not in (None, "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be None, 'bf16' or 'fp16', got {mixed_precision!r}")
        if isinstance(loss_func, type):
            raise TypeError(
                f"loss_func is the class {loss_func.__name__}: pass an instance, loss_func={loss_func.__name__}()"
            )
        if loss_func is not None and not callable(loss_func):
            raise TypeError(f"loss_func must be callable as loss_func(output, target), got {loss_func!r}")
        check_moms(moms)
        self.dls, self.loss_func, self.mixed_precision = dls, loss_func, mixed_precision
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device)
        self.metrics = list(metrics) if isinstance(metrics, (list, tuple)) else [metrics] if metrics else []
        for m in self.metrics:
            if isinstance(m, type) or not callable(m):
                raise TypeError(
                    f"each metric must be a function metric(output, target) -> number, got {m!r}; "
                    "e.g. metrics=accuracy (from lrwidget import accuracy)"
                )
            if all(hasattr(m, a) for a in ("accumulate", "reset", "value")):
                raise TypeError(
                    f"{_metric_name(m)} is a fastai metric that accumulates over the whole validation set "
                    "(Precision, F1Score, ...); lrwidget averages a function's value per batch, so it "
                    "would be wrong here: pass a function metric(output, target) -> number"
                )
        self.splitter = splitter or (lambda m: [list(m.parameters())])
        self.lr, self.moms = lr, moms
        self.opt_func = opt_func or partial(default_opt_func, device=self.device)
        self.wd_bn_bias, self.train_bn = wd_bn_bias, train_bn
        layer_groups = _layer_groups(self.splitter(self.model))
        self.opt = self.opt_func(param_groups(self.model, layer_groups, wd_bn_bias))
        if wd is not None:
            self._set_wd(wd)
        self.recorder = Recorder()
        self.observers: list[Observer] = []
        self.run: RunInfo | None = None
        self._stop_requested = False
        self._guard = RunGuard()

    # -- public API -------------------------------------------------------------------------

    @property
    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters of each layer group (the splitter's), which `slice` learning rates spread over."""
        out: dict[int, list[nn.Parameter]] = {}
        for i, g in zip(self._layer_index(), self.opt.param_groups):
            out.setdefault(i, []).extend(g["params"])
        return [out[i] for i in sorted(out)]

    @property
    def layer_lrs(self) -> list[float]:
        """The current learning rate of each layer group (what `slice(a, b)` set)."""
        lrs: dict[int, float] = {}
        for i, g in zip(self._layer_index(), self.opt.param_groups):
            lrs.setdefault(i, g["lr"])
        return [lrs[i] for i in sorted(lrs)]

    def _layer_index(self) -> list[int]:
        """The layer group of each optimizer parameter group (its own index where an opt_func made its own)."""
        idx = [g.get("layer_group", i) for i, g in enumerate(self.opt.param_groups)]
        return idx if all(isinstance(i, int) for i in idx) else list(range(len(idx)))

    @property
    def busy(self) -> bool:
        """True while lr_find, a fit, validate or load runs on this learner (from any thread)."""
        return self._guard.busy

    def stop(self) -> None:
        """Ask the running lr_find or fit to end at the next batch boundary (thread-safe)."""
        self._stop_requested = True

    @contextlib.contextmanager
    def _run_starts(self, kind: str) -> Iterator[None]:
        """Hold the learner for a run, then forget an earlier Stop (only once held: another run's Stop stands)."""
        with self._guard(kind):
            self._stop_requested = False
            yield

    def fit(self, n_epoch: int, lr: float | slice | None = None, wd: float | None = None) -> None:
        """Train `n_epoch` epochs at a constant learning rate (float, slice or one per layer group)."""
        with self._run_starts("fit"):
            n_epoch, per_group, total = self._plan(n_epoch, lr, "lr", wd)
            self._set_wd(wd)
            self._loop("fit", n_epoch, np.broadcast_to(per_group, (total, len(per_group))), None)

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
        with self._run_starts("fit_one_cycle"):
            self._one_cycle(n_epoch, lr_max, div, div_final, pct_start, wd, moms)

    def _one_cycle(
        self,
        n_epoch: int,
        lr_max: Any,
        div: float,
        div_final: float,
        pct_start: float,
        wd: float | None,
        moms: tuple[float, float, float] | None,
    ) -> None:
        """fit_one_cycle without clearing a stop already asked for: every argument is checked before anything
        changes."""
        n_epoch, per_group, total = self._plan(n_epoch, lr_max, "lr_max", wd, stacklevel=5)
        lrs, mom = one_cycle(
            total,
            per_group,
            div=div,
            div_final=div_final,
            pct_start=pct_start,
            moms=self.moms if moms is None else moms,
        )
        self._set_wd(wd)
        self._loop("fit", n_epoch, lrs, mom if _mom_key(self.opt) else None)

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
        """fastai's fine_tune: one cycle with the body frozen, then `epochs` unfrozen at slice(base_lr/2/lr_mult,
        base_lr/2). A Stop during the first phase ends it all."""
        with self._run_starts("fine_tune"):
            _check_n_epoch(epochs, "epochs"), _check_n_epoch(freeze_epochs, "freeze_epochs")
            base_lr = _check_positive("base_lr", base_lr)
            lr_mult = _check_positive("lr_mult", lr_mult)
            moms = self.moms if moms is None else moms
            check_one_cycle(div, div_final, pct_start, moms)  # the first phase's own div and pct_start are fixed
            if wd is not None:
                _check_positive("wd", wd, allow_zero=True)
            self.freeze()
            self._one_cycle(freeze_epochs, slice(base_lr), 25.0, div_final, 0.99, wd, moms)
            if self.run.end_reason != "completed" or self._stop_requested:
                return
            base_lr /= 2
            self.unfreeze()
            self._one_cycle(epochs, slice(base_lr / lr_mult, base_lr), div, div_final, pct_start, wd, moms)

    def validate(self) -> list[float]:
        """The validation loss and metrics of the model as it is, as fastai's: [valid_loss, *metrics]."""
        with self._guard("validate"):
            if self.dls.valid is None:
                raise ValueError("there is no validation data: build the learner with DataLoaders(train_dl, valid_dl)")
            modes = [(m, m.training) for m in self.model.modules()]
            try:
                return self._validate(stoppable=False)
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
        """The learning-rate range test; model, optimizer and random state are restored afterwards.

        `show_plot` draws the curve in a notebook and warns of any suggestion the curve could not give (None).
        The result unpacks as `lr_min, lr_steep`; with fastai's `suggest_funcs=(minimum, steep, valley, slide)`
        (from lrwidget.suggest, or fastai's own) as those suggestions, each also an attribute of its name."""
        with self._run_starts("lr_find"):  # not in the loop: a Stop while the state is copied still counts
            funcs = check_suggest_funcs(suggest_funcs)
            start_lr, end_lr = _check_positive("start_lr", start_lr), _check_positive("end_lr", end_lr)
            if start_lr >= end_lr:
                raise ValueError(f"start_lr must be below end_lr, got start_lr={start_lr!r} >= end_lr={end_lr!r}")
            if not isinstance(num_it, numbers.Integral) or isinstance(num_it, bool) or num_it < MIN_NUM_IT:
                raise ValueError(
                    f"num_it must be a whole number >= {MIN_NUM_IT}, got {num_it!r}: the suggestions drop the first "
                    "num_it//10 and the last 5 steps, so fewer steps leave nothing to suggest from "
                    "(100 is the default)"
                )
            lrs = lr_range(start_lr, end_lr, int(num_it))
            n_groups = len(self.layer_groups)
            best = math.inf
            rec = self.recorder

            def check() -> str | None:
                nonlocal best
                s = rec.smooth_loss
                if not math.isfinite(s):
                    return "non-finite loss"
                best = min(best, s)
                return "diverged" if stop_div and s > 4 * best else None

            saved = self._snapshot()
            try:
                n_iter = len(self.dls.train)
                self._loop(
                    "lr_find",
                    math.ceil(num_it / n_iter),
                    np.repeat(lrs[:, None], n_groups, axis=1),
                    None,
                    validate=False,
                    check=check,
                )
            finally:
                self._restore(saved)
            s = suggest_lrs(rec.lrs, rec.losses, num_it, self.run.end_reason)
            res = LRFindResult(
                np.array(rec.lrs),
                rec.losses.copy(),
                rec.raw_losses.copy(),
                s["lr_min"],
                s["lr_steep"],
                s["valley"],
                s["slide"],
                dict(s.reasons),
                dict(s.points),
                int(num_it),
                self.run.end_reason,
            )
            if funcs is not None:
                apply_suggest_funcs(res, funcs)
            rec.lr_find_result = res
            if show_plot:
                _show_in_notebook(lambda: rec.plot_lr_find())
                _warn_missing(res.missing, self.lr)
            return res

    def save(self, path: str | Path, with_opt: bool = True) -> Path:
        """Save the weights (and optimizer state) to `path` (`.pth` added when it has no suffix)."""
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{str(path)!r} is a folder: give a file name, e.g. {str(path / 'model.pth')!r}")
        if not path.suffix:
            path = path.with_suffix(".pth")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"format": SAVE_FORMAT, "model": self.model.state_dict()}
        if with_opt:
            state["opt"] = self.opt.state_dict()
        torch.save(state, path)
        return path

    def load(self, path: str | Path, with_opt: bool = True, strict: bool = True) -> Learner:
        """Load weights (and optimizer state) saved by `save`; tensors only (weights_only=True)."""
        with self._guard("load"):
            path = Path(path)
            if not path.exists() and not path.suffix and path.with_suffix(".pth").exists():
                path = path.with_suffix(".pth")
            if not path.is_file():
                raise FileNotFoundError(f"no saved learner at {str(path)!r}")
            try:
                state = torch.load(path, map_location=self.device, weights_only=True)
            except Exception as e:
                raise ValueError(
                    f"{str(path)!r} is not a file saved by Learner.save ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''})"
                ) from e
            if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
                raise ValueError(
                    f"{str(path)!r} is not a file saved by Learner.save (no lrwidget header); "
                    "to load plain weights use learn.model.load_state_dict(torch.load(path))"
                )
            self._check_loadable(path, state, with_opt, strict)
            self.model.load_state_dict(state["model"], strict=strict)
            if with_opt and "opt" in state:
                # keep this optimizer's implementation (fused, foreach...): a state saved on the CPU would turn off
                # the fused CUDA kernel; loading then places each tensor, 'step' too, as that implementation needs
                for saved, g in zip(state["opt"].get("param_groups", []), self.opt.param_groups):
                    saved.update({k: g[k] for k in IMPLEMENTATION_KEYS if k in g})
                self.opt.load_state_dict(state["opt"])
            return self

    def _check_loadable(self, path: Path, state: dict, with_opt: bool, strict: bool) -> None:
        """Refuse, before anything is loaded, a file whose weights or optimizer groups do not fit this learner."""
        own, saved = self.model.state_dict(), state["model"]
        problems = [
            f"{k}: saved {tuple(v.shape)}, here {tuple(own[k].shape)}"
            for k, v in saved.items()
            if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
        ][:3]
        if strict:
            missing, unexpected = [k for k in own if k not in saved], [k for k in saved if k not in own]
            problems += [f"missing {missing[:3]}"] * bool(missing) + [f"unexpected {unexpected[:3]}"] * bool(unexpected)
        if problems:
            raise ValueError(
                f"{str(path)!r} holds weights of another model ({'; '.join(problems)}); nothing was "
                "loaded. Build the same model first (strict=False loads the matching names only)"
            )
        if with_opt and "opt" in state:
            sizes = [len(g["params"]) for g in state["opt"].get("param_groups", [])]
            here = [len(g["params"]) for g in self.opt.param_groups]
            if sizes != here:
                raise ValueError(
                    f"{str(path)!r} holds an optimizer state for parameter groups of sizes {sizes}, this learner's "
                    f"optimizer has {here} (another splitter, wd_bn_bias or optimizer); nothing was loaded. "
                    "Pass with_opt=False to load the weights alone"
                )

    def freeze_to(self, n: int) -> None:
        """Train only layer groups from `n` on, as fastai: norm layers stay trainable (`train_bn`), and the
        optimizer state is cleared."""
        if not isinstance(n, numbers.Integral) or isinstance(n, bool):
            raise TypeError(f"freeze_to takes the index of the first layer group to train, got {n!r}")
        layers = self.layer_groups
        frozen = layers[:n] if n >= 0 else layers[: len(layers) + n]
        frozen_ids = {id(p) for ps in frozen for p in ps}
        norm_ids = (
            {id(p) for m in self.model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters()}
            if self.train_bn
            else set()
        )
        if n >= len(layers):
            but = " but for its norm layers" if norm_ids else ""
            warnings.warn(
                f"freezing {n} layer groups of {len(layers)}: the whole model is frozen{but}; "
                "freeze_to(-1) trains the last group",
                UserWarning,
                stacklevel=2,
            )
        for ps in layers:
            for p in ps:
                p.requires_grad_(id(p) not in frozen_ids or id(p) in norm_ids)
        self.opt.state.clear()

    def freeze(self) -> None:
        """Train only the last parameter group (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every parameter group."""
        self.freeze_to(0)

    # -- the training loop -------------------------------------------------------------------

    def _loop(
        self,
        kind: str,
        n_epoch: int,
        lrs: np.ndarray,
        moms: np.ndarray | None,
        validate: bool = True,
        check: Callable[[], str | None] | None = None,
    ) -> None:
        """The one training loop: batch k uses lrs[k] (one per layer group) and moms[k]; validation each epoch."""
        model, opt, dl, rec = self.model, self.opt, self.dls.train, self.recorder
        groups = opt.param_groups
        if not any(p.requires_grad for g in groups for p in g["params"]):
            raise ValueError(
                "every parameter is frozen, so there is nothing to train: call learn.unfreeze(), "
                "or freeze_to(n) with n below the number of layer groups"
            )
        total = len(lrs)
        lr_rows = lrs[:, self._layer_index()].tolist()  # one column per optimizer parameter group
        mom_list = moms.tolist() if moms is not None else None
        mom_key = _mom_key(opt)
        names = ["epoch", "train_loss", "valid_loss", *map(_metric_name, self.metrics), "time"]
        rec.reset(names)
        self.run = run = RunInfo(kind, n_epoch, len(dl), total)
        autocast = self._autocast()
        scaler = torch.amp.GradScaler(self.device.type) if self.mixed_precision == "fp16" else None
        dev, k, error = self.device, 0, None
        opt.zero_grad(set_to_none=True)
        self._emit("fit_start")
        try:
            for epoch in range(n_epoch):
                run.epoch, t0 = epoch, time.monotonic()
                model.train()
                for batch in dl:
                    if self._stop_requested:
                        raise _Stop("stopped")
                    row = lr_rows[k]
                    for g, lr in zip(groups, row):
                        g["lr"] = lr
                    m = None
                    if mom_list is not None:
                        m = mom_list[k]
                        for g in groups:
                            if mom_key == "betas":
                                g["betas"] = (m, g["betas"][1])
                            else:
                                g["momentum"] = m
                    xs, kw, y = split_batch(to_device(batch, dev))
                    with autocast:
                        out = model(*xs, **kw)
                        loss = self._loss(out, y, first=k == 0)
                    if scaler is None:
                        loss.backward()
                        opt.step()
                    else:
                        scaler.scale(loss).backward()
                        scaler.step(opt)
                        scaler.update()
                    opt.zero_grad(set_to_none=True)
                    rec.add_batch(loss.detach(), row[-1], m)
                    k += 1
                    for o in self.observers:
                        o.batch_end(self)
                    if check is not None and (reason := check()):
                        raise _Stop(reason)
                    if k >= total:
                        break
                if k == 0:
                    raise ValueError("the training data produced no batches: check the DataLoader and its dataset")
                row = [rec.smooth_loss]
                if validate:
                    row += self._validate()
                else:
                    row += [math.nan] * (1 + len(self.metrics))
                rec.add_epoch(row, time.monotonic() - t0)
                self._emit("epoch_end")
            run.end_reason = "completed"
        except _Stop as s:
            run.end_reason = str(s)
        except BaseException as e:
            run.end_reason, error = "error", e
            raise
        finally:
            rec.flush()
            opt.zero_grad(set_to_none=True)
            self._emit("fit_end", error)

    def _loss(self, out: Any, y: Any, first: bool) -> torch.Tensor:
        """The loss of a batch; errors from a shape mismatch name both shapes."""
        if self.loss_func is None:
            self.loss_func = default_loss_for(y)
        if first:
            self._check_shapes(out, y)
        try:
            loss = self.loss_func(out, y)
        except (RuntimeError, ValueError, IndexError) as e:
            raise ValueError(self._shape_message(out, y) + f" ({type(e).__name__}: {e})") from e
        if first and (not isinstance(loss, torch.Tensor) or loss.numel() != 1):
            got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(
                f"the loss function {_loss_name(self.loss_func)} returned {got}; training needs one "
                "number per batch: use reduction='mean' (the default), or take .mean() of it"
            )
        return loss

    def _shape_message(self, out: Any, y: Any) -> str:
        so = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        sy = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        return (
            f"the loss function {_loss_name(self.loss_func)} cannot compare the model's output of shape {so} "
            f"with the target of shape {sy}: make the model's last layer match the target"
        )

    def _check_shapes(self, out: Any, y: Any) -> None:
        """Catch, once per run, shape mismatches that torch would broadcast or crash the GPU on."""
        if not (isinstance(out, torch.Tensor) and isinstance(y, torch.Tensor)):
            return
        lf = self.loss_func
        if isinstance(lf, (nn.CrossEntropyLoss, nn.NLLLoss)) and not y.is_floating_point():
            if out.ndim == 2 and y.ndim == 2 and y.shape[1] == 1 and out.shape[0] == y.shape[0]:
                raise ValueError(
                    f"the class targets have shape {tuple(y.shape)}, an extra dimension of size 1: "
                    f"{_loss_name(lf)} wants shape ({y.shape[0]},); make the dataset yield y.squeeze(1)"
                )
            if out.ndim != y.ndim + 1 or out.shape[0] != y.shape[0] or out.shape[2:] != y.shape[1:]:
                raise ValueError(
                    self._shape_message(out, y) + f" (expected output (batch, n_classes), "
                    f"here ({y.shape[0] if y.ndim else '?'}, n_classes))"
                )
            hi = int(y.max()) if y.numel() else -1  # one sync per run: a bad index would kill a CUDA context
            if hi >= out.shape[1]:
                raise ValueError(
                    self._shape_message(out, y) + f": the target holds class {hi} but the model "
                    f"outputs only {out.shape[1]} classes (set n_out to at least {hi + 1})"
                )
        elif isinstance(lf, MSELossFlat):
            if out.numel() != y.numel():
                raise ValueError(self._shape_message(out, y) + " (this loss needs one output per target value)")
        elif isinstance(lf, (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.BCEWithLogitsLoss)):
            if out.shape != y.shape:
                raise ValueError(self._shape_message(out, y) + " (this loss needs equal shapes)")

    def _validate(self, stoppable: bool = True) -> list[float]:
        """Validation loss and metrics, averaged over samples; one device read at the end."""
        if self.dls.valid is None:
            return [math.nan] * (1 + len(self.metrics))
        model, dev = self.model, self.device
        model.eval()
        sums, n = None, 0
        with torch.no_grad(), self._autocast():
            for batch in self.dls.valid:
                if stoppable and self._stop_requested:
                    raise _Stop("stopped")
                xs, kw, y = split_batch(to_device(batch, dev))
                out = model(*xs, **kw)
                if self.loss_func is None:
                    self.loss_func = default_loss_for(y)
                bs = y.shape[0] if isinstance(y, torch.Tensor) and y.ndim else len(y)
                vals = torch.stack([_one_number(f, f(out, y), dev) for f in (self.loss_func, *self.metrics)]) * bs
                sums = vals if sums is None else sums + vals
                n += bs
        if sums is None:
            raise ValueError("the validation data produced no batches")
        return (sums.cpu().double() / n).tolist()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.mixed_precision is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mixed_precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _emit(self, event: str, *args: Any) -> None:
        for o in self.observers:
            getattr(o, event)(self, *args)

    def _plan(
        self, n_epoch: int, lr: Any, name: str, wd: float | None, stacklevel: int = 4
    ) -> tuple[int, np.ndarray, int]:
        """Check a fit's arguments, changing nothing: the epochs, one lr per layer group, wd, the batches in all."""
        n_epoch = _check_n_epoch(n_epoch)
        # stacklevel: the warning for a reversed slice names the user's line that called fit or fit_one_cycle
        per_group = lr_per_group(
            self.lr if lr is None else lr, len(self.layer_groups), name=name, stacklevel=stacklevel
        )
        if wd is not None:
            _check_positive("wd", wd, allow_zero=True)
        return n_epoch, per_group, n_epoch * len(self.dls.train)

    def _set_wd(self, wd: float | None) -> None:
        if wd is None:
            return
        wd = _check_positive("wd", wd, allow_zero=True)
        for g in self.opt.param_groups:
            if not g.get("wd_exempt"):
                g["weight_decay"] = wd

    # -- exact save and restore of everything lr_find touches -----------------------------------

    def _snapshot(self) -> dict:
        """Model, optimizer, module modes, grads and every random state, copied to host memory."""
        gens = _loader_generators(self.dls.train)
        return {
            "model": _clone_cpu(self.model.state_dict()),
            "opt": _clone_cpu(self.opt.state_dict()),
            "modes": [(m, m.training) for m in self.model.modules()],
            "grads": [
                (p, None if p.grad is None else p.grad.detach().to("cpu", copy=True)) for p in self.model.parameters()
            ],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized()
            else None,
            "mps": torch.mps.get_rng_state() if self.device.type == "mps" else None,
            "numpy": np.random.get_state(),
            "random": random.getstate(),
            "loader": [(g, g.get_state()) for g in gens],
            "workers": getattr(self.dls.train, "_iterator", None),
        }

    def _restore(self, s: dict) -> None:
        """Put back what `_snapshot` saved."""
        self.model.load_state_dict(s["model"])
        _load_opt_in_place(self.opt, s["opt"])
        for m, training in s["modes"]:
            m.training = training
        for p, g in s["grads"]:
            p.grad = None if g is None else g.to(p.device)
        torch.set_rng_state(s["torch"])
        if s["cuda"] is not None:
            torch.cuda.set_rng_state_all(s["cuda"])
        if s["mps"] is not None:
            torch.mps.set_rng_state(s["mps"])
        np.random.set_state(s["numpy"])
        random.setstate(s["random"])
        for g, state in s["loader"]:
            g.set_state(state)
        dl = self.dls.train
        if getattr(dl, "persistent_workers", False) and s["workers"] is None and dl._iterator is not None:
            # lr_find started the loader's worker processes, whose random state has moved on: end them, so that
            # the next epoch starts them afresh from the restored generators, as it would have without lr_find
            it, dl._iterator = dl._iterator, None
            it._shutdown_workers()


def _load_opt_in_place(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Load a state_dict of `opt` into the tensors it already holds, so no device memory is allocated.

    Falls back to `opt.load_state_dict` where the state's layout changed (keys, shapes or dtypes).
    """
    groups, saved_groups = opt.param_groups, saved["param_groups"]
    pairs = [(p, i) for g, sg in zip(groups, saved_groups) for p, i in zip(g["params"], sg["params"])]
    same_layout = len(groups) == len(saved_groups) and all(
        len(g["params"]) == len(sg["params"]) for g, sg in zip(groups, saved_groups)
    )
    for p, i in pairs if same_layout else ():
        old, cur = saved["state"].get(i), opt.state.get(p)
        if old is not None and (
            cur is None
            or cur.keys() != old.keys()
            or any(
                isinstance(v, torch.Tensor)
                and not (isinstance(cur[k], torch.Tensor) and cur[k].shape == v.shape and cur[k].dtype == v.dtype)
                for k, v in old.items()
            )
        ):
            same_layout = False
            break
    if not same_layout:
        opt.load_state_dict(saved)
        return
    for g, sg in zip(groups, saved_groups):
        g.update({k: copy.deepcopy(v) for k, v in sg.items() if k != "params"})
    for p, i in pairs:
        old = saved["state"].get(i)
        if old is None:
            opt.state.pop(p, None)
            continue
        cur = opt.state[p]
        for k, v in old.items():
            if isinstance(v, torch.Tensor):
                cur[k].copy_(v)
            else:
                cur[k] = copy.deepcopy(v)


def _warn_missing(missing: dict[str, str], lr: float) -> None:
    """Warn, from lr_find to its caller, of the suggestions that came out None and why."""
    if not missing:
        return
    by_reason: dict[str, list[str]] = {}
    for name, why in missing.items():
        by_reason.setdefault(why, []).append(name)
    said = "; ".join(f"{', '.join(names)}: {why}" for why, names in by_reason.items())
    warnings.warn(
        f"lr_find could not suggest {said}. Those are None, and fit_one_cycle(lr_max=None) trains at learn.lr={lr:g}",
        UserWarning,
        stacklevel=3,
    )


def _one_number(f: Callable, v: Any, dev: torch.device) -> torch.Tensor:
    """A loss or metric's value for a batch as a 0-d float tensor on `dev`; anything else is refused by name."""
    try:
        t = torch.as_tensor(v, device=dev)
    except (TypeError, ValueError, RuntimeError):
        t = None
    if t is None or t.numel() != 1:
        got = f"shape {tuple(t.shape)}" if t is not None else type(v).__name__
        raise ValueError(
            f"{_metric_name(f)} returned {got} for a validation batch; a loss or metric must return "
            "one number per batch (e.g. average it with .mean())"
        )
    return t.float().reshape(())


def _show_in_notebook(make: Callable[[], Any]) -> None:
    """Display a figure when running inside a Jupyter kernel; do nothing elsewhere."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None or not hasattr(ip, "kernel"):
        return
    from IPython.display import display

    display(make())
