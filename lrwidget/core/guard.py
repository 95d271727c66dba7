"""One run at a time on a learner, and the one stop signal of each run (Stop, an interrupt, the exit)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from . import interrupts


class StopSignal:
    """The stop request of one run: set by Stop or an interrupt, read by the loop at every batch."""

    def __init__(self, kind: str):
        self.kind = kind
        self.reason = ""  # 'stopped' or 'interrupted': the first request's
        self._event = threading.Event()
        self._lock = threading.RLock()  # re-entrant: a SIGINT handler may set it while the main thread is in set()

    def set(self, reason: str = "stopped") -> None:
        """Ask the run to end at the next batch boundary (thread-safe; the first reason given stays)."""
        with self._lock:
            if not self._event.is_set():
                self.reason = reason
                self._event.set()

    def is_set(self) -> bool:
        """True once a stop was asked for."""
        return self._event.is_set()


class RunGuard:
    """Holds a learner for one run at a time, with that run's stop signal."""

    # a second lr_find or fit (another widget, a cell typed meanwhile) would step the same model and optimizer and
    # corrupt both runs. The signal lives as long as the hold: a Stop after a widget reserved the learner but
    # before its loop began still counts, and a stray Stop while nothing runs has nothing to set

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._signal: StopSignal | None = None
        self._owner: int | None = None  # the thread that runs it; None while reserved for a thread to come
        self._depth = 0  # runs entered on the adopting thread and not yet left: one at a time, one after another

    @property
    def busy(self) -> bool:
        """True while a run holds the learner."""
        return self._signal is not None

    @property
    def kind(self) -> str:
        """What holds the learner ('lr_find', 'fit', ...), or ''."""
        sig = self._signal
        return sig.kind if sig is not None else ""

    @property
    def signal(self) -> StopSignal | None:
        """The stop signal of the run that holds the learner, if any."""
        return self._signal

    def stop(self, reason: str = "stopped") -> None:
        """Ask the run that holds the learner, if any, to end at the next batch boundary."""
        sig = self._signal
        if sig is not None:
            sig.set(reason)

    def reserve(self, kind: str) -> StopSignal:
        """Hold the learner for a run that a worker thread will start (`adopt`); RuntimeError when busy."""
        with self._mutex:
            if self._signal is not None:
                raise RuntimeError(
                    f"this learner is busy with {self._signal.kind} (in a widget or another thread), so {kind} "
                    "cannot start: wait for it to end, or call learn.stop()"
                )
            self._signal, self._owner, self._depth = StopSignal(kind), None, 0
            return self._signal

    def release(self, sig: StopSignal) -> None:
        """Let go of the learner held for `sig`."""
        with self._mutex:
            if self._signal is sig:
                self._signal = self._owner = None

    @contextlib.contextmanager
    def adopt(self, sig: StopSignal) -> Iterator[StopSignal]:
        """Run the reserved run `sig` on this thread, and let go of the learner when it ends."""
        with self._mutex:
            if self._signal is not sig:
                raise RuntimeError("this run no longer holds the learner")
            self._owner = threading.get_ident()
        try:
            yield sig
        finally:
            self.release(sig)

    @contextlib.contextmanager
    def __call__(self, kind: str) -> Iterator[StopSignal]:
        """Hold the learner for a run; on a thread that adopted a reservation, runs one after another are its own."""
        # a widget's sweep runs several fits in one reservation; a run inside a run (an observer calling fit) is
        # refused, as from any other thread
        with self._mutex:
            held = self._signal if self._owner == threading.get_ident() and self._depth == 0 else None
            if held is not None:
                self._depth += 1
        if held is not None:
            try:
                yield held
            finally:
                self._depth -= 1
            return
        sig = self.reserve(kind)
        with self.adopt(sig), interrupts.as_stop(sig):
            self._depth = 1
            yield sig
