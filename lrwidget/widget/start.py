"""The same start: one exact copy of the learner's state that Fits (`from_start`), sweeps and reset() go back to."""

from __future__ import annotations

from typing import Any

from ..core.interface import Driven
from ..state import snapshot as snapshots


class Start:
    """One exact copy (`learn.take_state`) of the weights, optimizer and random state: in host memory, or on disk when
    memory is short; taken at the first Fit or by `mark()`, never on the GPU."""

    def __init__(self, learn: Driven):
        self.learn = learn
        self.state: Any = None  # the copy, None until there is one
        self.number = 0  # how many starts this widget took: runs say which one they began at ("start 2")
        self.took = False  # the running Fit took the start (its status says where it went)

    @property
    def exists(self) -> bool:
        """True once there is a start to go back to."""
        return self.state is not None

    @property
    def name(self) -> str:
        """The start's name in the runs table and the status: 'start 1', 'start 2'..."""
        return f"start {self.number}" if self.exists else ""

    def mark(self) -> None:
        """Take the learner's state now as the start (RuntimeError while a run holds the learner)."""
        with self.learn.guard("mark_start"):
            # the new copy first: one refused (a full disk) leaves the old start; "auto" counts the old one's memory
            saved = self.learn.take_state()
            self.drop()
            self.state, self.number = saved, self.number + 1

    def put_back(self) -> None:
        """Put back the start's state (RuntimeError without a start, or while a run holds the learner)."""
        if self.state is None:
            raise RuntimeError("there is no start to go back to yet: click Fit once, or call w.mark_start()")
        with self.learn.guard("reset"):
            self.learn.restore_state(self.state)

    def begin(self, restore: bool) -> None:
        """In a run: take the start if there is none yet (the first Fit), else put it back when `restore`."""
        if self.state is None:
            self.state, self.number = self.learn.take_state(), self.number + 1
            self.took = True
        elif restore:
            self.learn.restore_state(self.state)

    def restore(self) -> None:
        """In a run (the learner already held by it): put the start back."""
        self.learn.restore_state(self.state)

    def said(self) -> str:
        """Where the start is, when it is on disk ('' in memory): '; the start is 1.2 GiB on disk in /tmp/…'."""
        where = snapshots.said(self.state)
        return f"; the start is {where}" if where else ""

    def drop(self) -> None:
        """Let go of the start: a copy on disk deletes its files now."""
        saved, self.state = self.state, None
        snapshots.discard(saved)
