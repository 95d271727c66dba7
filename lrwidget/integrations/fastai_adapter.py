"""A fastai Learner presented to LRWidget as an lrwidget Learner; fastai stays an optional extra.

Importing this module does not import fastai: the callback class is built the first time a fastai
Learner is wrapped, and by then fastai is loaded (the learner is one of its objects).

What the adapter runs is fastai's own code: `lr_find` (its LRFinder schedule, its divergence rule,
its suggestion functions, its save-and-reload of the weights) and `fit_one_cycle`. A fastai
callback, ordered after fastai's Recorder, copies each training batch's lr, momentum and loss into
an lrwidget Recorder, each epoch's row from fastai's recorder, tells the widget's observers, and
ends the run at the next batch when `stop()` was asked.

What fastai does not do, and the adapter says instead of failing:
- fastai's lr_find does not say why it ended: the end reason is read off the curve ('diverged'
  when it ended before num_it, 'non-finite loss' when the loss went nan or inf).
- fastai's suggestion functions raise on a curve too short for them: each is called through a
  guard, so that one that fails gives None and the reason, as lrwidget's own suggestions do.
- fastai's lr_find reloads the weights and optimizer when it ends or is cancelled, not after an
  error, and never the random-number state: after an error the adapter runs fastai's own reload
  (LRFinder.after_fit); the random state moves on, and the widget says so.
"""

from __future__ import annotations

import contextlib
import math
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..core.events import Observer, RunInfo
from ..core.find_result import LRFindResult, apply_suggest_funcs, check_suggest_funcs
from ..core.guard import RunGuard
from ..core.recorder import Recorder
from ..state import snapshot as snapshots
from ..state.disk import DiskCopy
from .fastai_callback import as_float, callback_class

__all__ = ["FastaiLearner", "is_fastai_learner", "wrap"]

LR_FIND_CODE_ARGS = ", suggest_funcs=(minimum, steep, valley, slide)"
FIND_NOTE = "fastai Learner: why lr_find ended is read off the curve (fastai does not report it)"
FIND_RESTORES = (
    "fastai's lr_find reloaded the model and optimizer as they were before it "
    "(the random-number state is not restored by fastai)"
)

# the last lr_find result of each fastai Learner, so that a new widget on it starts from that curve
# (results hold no reference to their learner: the learner can still be garbage-collected)
_last_find: weakref.WeakKeyDictionary[Any, LRFindResult] = weakref.WeakKeyDictionary()
# one guard per fastai learner, shared by every adapter (every widget) over it
_guards: weakref.WeakKeyDictionary[Any, RunGuard] = weakref.WeakKeyDictionary()

ONE_PROCESS_ONLY = (
    "{what} runs on lrwidget's own Learner (its probes and repeats are its own loop's), not on a fastai Learner: "
    "train the same model and data with lrwidget.Learner for it, or use fastai's lr_find"
)


def is_fastai_learner(obj: Any) -> bool:
    """True when `obj` is a fastai Learner (or a subclass); never imports fastai."""
    mod = sys.modules.get("fastai.learner")
    cls = getattr(mod, "Learner", None) if mod is not None else None
    return isinstance(cls, type) and isinstance(obj, cls)


def wrap(learn: Any) -> FastaiLearner:
    """`learn` presented as an lrwidget Learner (an adapter already is one)."""
    return learn if isinstance(learn, FastaiLearner) else FastaiLearner(learn)


def _guarded(name: str, func: Callable, points: dict, reasons: dict) -> Callable:
    """fastai suggestion `func`, returning (None, None) and noting why where it fails on a curve."""

    def suggest(lrs: Any, losses: Any, num_it: int) -> tuple:
        n = len(lrs)
        try:
            lr, point = func(lrs, losses, num_it)
            lr = float(lr)
            point = (float(point[0]), float(point[1]))
        except Exception as e:
            reasons[name] = (
                f"fastai's {func.__name__} found no lr on this curve ({n} usable point"
                f"{'' if n == 1 else 's'}; {type(e).__name__}: {e}); run lr_find with more steps"
            )
            return None, None
        if not (math.isfinite(lr) and lr > 0):
            reasons[name] = f"fastai's {func.__name__} gave {lr!r}, not a positive finite lr"
            return None, None
        points[name] = point
        return lr, point

    suggest.__name__ = func.__name__  # fastai names the fields of its result after the functions
    return suggest


class FastaiLearner:
    """A fastai Learner seen through lrwidget's interface (interface.Driven), which LRWidget drives."""

    # `learn` is the fastai Learner, whose other attributes (model, dls, opt...) are read through; `recorder` is an
    # lrwidget Recorder that a fastai callback fills during lr_find and fit (fastai's own is `learn.recorder`)

    lr_find_code_args = LR_FIND_CODE_ARGS  # what LRWidget adds to the lr_find call it shows
    lr_find_restores = FIND_RESTORES  # what LRWidget says is restored after a stopped lr_find
    accum_steps = 1  # fastai's own GradientAccumulation callback steps within its batches: the progress counts those

    def __init__(self, learn: Any):
        if not is_fastai_learner(learn):
            raise TypeError(f"expected a fastai Learner, got {type(learn).__name__}")
        self.learn = learn
        self.recorder = Recorder()
        with contextlib.suppress(TypeError):
            self.recorder.lr_find_result = _last_find.get(learn)
        self.observers: list[Observer] = []
        self.run: RunInfo | None = None
        self.note = ""
        self._num_it = 0
        try:
            self.guard = _guards.setdefault(learn, RunGuard())
        except TypeError:  # not weakly referable: this adapter's own guard
            self.guard = RunGuard()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "learn":
            raise AttributeError(name)
        return getattr(self.learn, name)

    def __repr__(self) -> str:
        return f"FastaiLearner({type(self.learn).__module__}.{type(self.learn).__name__})"

    # -- the Learner interface LRWidget uses ------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while lr_find or a fit runs through this adapter."""
        return self.guard.busy

    def stop(self) -> None:
        """Ask the running lr_find or fit to end at the next batch (thread-safe)."""
        self.guard.stop()

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
        """fastai's lr_find with its four suggest_funcs, as an LRFindResult (that answers for `suggest_funcs`)."""
        from fastai.callback.schedule import minimum, slide, steep, valley

        if repeats != 1:
            raise NotImplementedError(ONE_PROCESS_ONLY.format(what=f"lr_find(repeats={repeats!r})"))

        asked = check_suggest_funcs(suggest_funcs)
        funcs = {"lr_min": minimum, "lr_steep": steep, "valley": valley, "slide": slide}
        with self.guard("lr_find") as sig:
            points: dict[str, tuple[float, float]] = {}
            reasons: dict[str, str] = {}
            guarded = tuple(_guarded(k, f, points, reasons) for k, f in funcs.items())
            self._num_it = int(num_it)
            self.note = ""
            cb = callback_class()(self, sig, "lr_find", None, max(int(num_it), 6))
            fl = self.learn

            def call() -> Any:
                with fl.added_cbs(cb):
                    return fl.lr_find(
                        start_lr=start_lr,
                        end_lr=end_lr,
                        num_it=num_it,
                        stop_div=stop_div,
                        show_plot=False,
                        suggest_funcs=guarded,
                    )

            try:
                sugg = self._run(cb, call)
            except BaseException:
                try:
                    self._reload_after_error(cb.lr_finder)
                except Exception as e:
                    self.note = (
                        f"fastai's lr_find could not reload the weights after the error ({type(e).__name__}: {e})"
                    )
                raise
            frec = fl.recorder
            lrs = np.array([as_float(v) for v in frec.lrs], dtype=float)
            losses = np.array([as_float(v) for v in frec.losses], dtype=float)
            raw = self.recorder.raw_losses
            raw = raw.copy() if len(raw) == len(lrs) else np.empty(0)
            values = dict(zip(funcs, (None if v is None else float(v) for v in sugg)))
            for k in funcs:
                if values[k] is None and k not in reasons:
                    reasons[k] = "fastai gave no suggestion"
            res = LRFindResult(
                lrs,
                losses,
                raw,
                values["lr_min"],
                values["lr_steep"],
                values["valley"],
                values["slide"],
                reasons,
                points,
                int(num_it),
                self.run.end_reason if self.run else "",
            )
            if asked is not None:
                res = apply_suggest_funcs(res, asked)
            self.recorder.lr_find_result = res
            with contextlib.suppress(TypeError):
                _last_find[fl] = res
            self.note = FIND_NOTE if res.end_reason in ("diverged", "non-finite loss") else ""
            if show_plot:
                self.recorder.show_lr_find()
            return res

    def fit_one_cycle(self, n_epoch: int, lr_max: Any = None, **kwargs: Any) -> None:
        """fastai's `learn.fit_one_cycle(n_epoch, lr_max=lr_max, **kwargs)`, with the live view fed."""
        self._train("fit_one_cycle", n_epoch, lr_max=lr_max, **kwargs)

    def fit(self, n_epoch: int, lr: Any = None, **kwargs: Any) -> None:
        """fastai's `learn.fit(n_epoch, lr, **kwargs)`, with the live view fed."""
        self._train("fit", n_epoch, lr=lr, **kwargs)

    def _train(self, method: str, n_epoch: int, **kwargs: Any) -> None:
        """Call fastai's training `method` with the widget's callback added to the caller's `cbs`."""
        with self.guard("fit") as sig:
            cbs = list(kwargs.pop("cbs", None) or [])
            cb = callback_class()(self, sig, "fit", n_epoch, None)
            self.note = ""
            self._run(cb, lambda: getattr(self.learn, method)(n_epoch, cbs=[*cbs, cb], **kwargs))

    def take_state(self) -> dict | DiskCopy:
        """An exact copy of the weights, fastai's optimizer (None before its first fit), modes, grads and every random
        state: in host memory, or in a temporary folder when memory is short (snapshot="auto", snapshot.py)."""
        fl = self.learn
        device = torch.device(getattr(fl.dls, "device", None) or "cpu")
        return snapshots.take(fl.model, fl.opt, fl.dls.train, device)

    def restore_state(self, saved: dict | DiskCopy) -> None:
        """Put back a copy made by `take_state` (which stays as it was)."""
        fl = self.learn
        if saved["opt"] is None:
            fl.opt = None  # fastai makes a fresh one at the next fit, as it did after the copy was taken
        elif fl.opt is None:
            fl.create_opt()
        snapshots.restore(saved, fl.model, fl.opt, fl.dls.train)

    # -- helpers ------------------------------------------------------------------------------------

    def _run(self, cb: Any, call: Callable[[], Any]) -> Any:
        """Run a fastai call without its progress bars and printed tables; end the run on an error."""
        import fastai.callback.schedule  # noqa: F401  (adds lr_find and fit_one_cycle to fastai's Learner)

        fl = self.learn
        no_bar = getattr(fl, "no_bar", None)  # fastai.callback.progress: absent, so is its progress bar
        try:
            with no_bar() if no_bar is not None else contextlib.nullcontext(), fl.no_logging():
                return call()
        except BaseException as e:
            cb.finish(e)
            raise

    def _reload_after_error(self, lrf: Any) -> None:
        """After an error fastai's LRFinder never reloads the weights it saved: run its after_fit here."""
        if lrf is None or "tmp_p" not in vars(lrf):
            return
        old = lrf.learn
        lrf.learn = self.learn  # fastai detached the callback from the learner on the way out
        try:
            lrf.after_fit()  # fastai's own reload of the weights and optimizer, and the cleanup
        finally:
            lrf.learn = old

    def lr_search(self, epochs: int = 5, budget: float = 1.5, **options: Any) -> Any:
        """Refused: lr_search runs lrwidget's own probes, which a fastai Learner's fit does not take."""
        raise NotImplementedError(ONE_PROCESS_ONLY.format(what="lr_search"))

    def find_end_reason(self) -> str:
        """Why fastai's lr_find ended, read off its recorder: fastai does not say."""
        frec = self.learn.recorder
        losses = np.array([as_float(v) for v in frec.losses], dtype=float)
        if len(losses) and not np.isfinite(losses).all():
            return "non-finite loss"
        return "diverged" if len(losses) < max(self._num_it, 6) else "completed"
