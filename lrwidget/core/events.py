"""What a run tells its observers: the four events, the run's description, and the one way they are sent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


class Observer:
    """Receives a learner's events; override what you need. Called on the training thread."""

    def fit_start(self, learn: Any) -> None: ...
    def batch_end(self, learn: Any) -> None: ...
    def epoch_end(self, learn: Any) -> None: ...
    def fit_end(self, learn: Any, error: BaseException | None) -> None: ...


@dataclass
class RunInfo:
    """What a learner is running: kind ('lr_find' or 'fit'), its size and where it is."""

    kind: str
    n_epoch: int
    n_iter: int  # optimizer steps per epoch (training batches, unless accum_steps > 1)
    total: int  # optimizer steps planned in all
    epoch: int = 0
    start: float = field(default_factory=time.monotonic)
    # 'completed', 'stopped', 'interrupted', 'diverged', 'non-finite loss', 'non-finite gradients' or 'error'
    end_reason: str = ""
    skipped: int = 0  # lr_find with fp16: steps whose gradients overflowed, skipped by the scaler and run again
    copy_on_disk: str = ""  # where lr_find's copy of the state is when on disk: '1.2 GiB on disk in /tmp/lrwidget-…'
    lr_max: float | None = None  # the schedule's peak rate of the last layer group (a probe's rate in lr_search)
    probe: tuple[int, int, str] | None = None  # in lr_search or lr_find(repeats=k): (i from 1, planned, 'sweep'...)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.start


def emit(observers: list, event: str, source: Any, *args: Any) -> None:
    """Send `event` from `source` to every observer, in order (a copy of the list: one may leave meanwhile)."""
    for o in list(observers):
        getattr(o, event)(source, *args)
