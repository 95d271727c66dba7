"""The written interface between LRWidget and what it drives: lrwidget's Learner and the fastai adapter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from .events import Observer, RunInfo
from .find_result import LRFindResult
from .guard import RunGuard
from .recorder import Recorder
from .search import LRSearchResult


@runtime_checkable
class Driven(Protocol):
    """What LRWidget uses of a learner, and all it uses."""

    observers: list[Observer]  # the widget adds its own while a run of its own goes
    run: RunInfo | None  # the last run: its kind, size, progress and end reason
    recorder: Recorder  # the last run's batches and epochs; `lr_find_result` the last lr_find's
    guard: RunGuard  # one run at a time, with its stop signal
    lr_find_code_args: str  # what the widget adds to the lr_find call it shows in `w.code`
    lr_find_restores: str  # what a stopped lr_find put back, as the status says it
    note: str  # what the learner could not do in the last run, said after it ('' for none)
    accum_steps: int  # batches whose gradients one optimizer step sums (the progress counts steps when > 1)

    @property
    def busy(self) -> bool:
        """True while a run holds the learner."""
        ...

    def stop(self) -> None:
        """Ask the running run to end at the next batch boundary."""
        ...

    def lr_find(
        self,
        start_lr: float = ...,
        end_lr: float = ...,
        num_it: int = ...,
        stop_div: bool = ...,
        show_plot: bool = ...,
        suggest_funcs: Callable | Sequence[Callable] | None = ...,
        repeats: int = ...,
    ) -> LRFindResult:
        """The learning-rate range test (the median of `repeats`), with the learner as it was afterwards."""
        ...

    def lr_search(self, epochs: int = ..., budget: float = ..., **options: Any) -> LRSearchResult:
        """Short fits from this state at rates across the curve's range; the learner ends as it began."""
        ...

    def fit_one_cycle(self, n_epoch: int, lr_max: Any = ...) -> None:
        """Train one cycle."""
        ...

    def take_state(self) -> Any:
        """An exact copy of the weights, optimizer and random state, in host memory or on disk (the same start)."""
        ...

    def restore_state(self, saved: Any) -> None:
        """Put back a copy made by `take_state`, which stays as it was."""
        ...
