"""A widget's run in a background thread: start, Stop, interrupts, wait (with the run's error), and the exit.

("Background", not "worker": in lrwidget a worker is one of the N processes of lrwidget/parallel.)
"""

from __future__ import annotations

import atexit
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from ..core import interrupts
from ..core.guard import StopSignal

EXIT_TIMEOUT = 60.0  # seconds a run left going at exit gets to reach its next batch boundary

_live: weakref.WeakSet[Background] = weakref.WeakSet()


class Background:
    """Runs one call at a time in a daemon thread, holding the learner reserved for it; the end is its own event."""

    def __init__(self) -> None:
        self.kind = ""
        self.error: BaseException | None = None
        self._sig: StopSignal | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._done.set()

    @property
    def running(self) -> bool:
        """True from `start` until the run and its end callbacks are over."""
        return not self._done.is_set()

    def start(
        self,
        kind: str,
        learn: Any,
        sig: StopSignal,
        call: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException, str], None],
        on_end: Callable[[], None],
    ) -> None:
        """Run `call()` in a thread as the run `sig` reserved on `learn`; then `on_done` or `on_error`, `on_end`."""
        self.kind, self.error, self._sig = kind, None, sig
        self._done.clear()
        interrupts.watch(sig)  # the kernel's interrupt (or Ctrl-C) now stops this run
        _live.add(self)
        self._thread = threading.Thread(
            target=self._work,
            args=(learn, sig, call, on_done, on_error, on_end),
            daemon=True,
            name=f"lrwidget-{kind}",
        )
        self._thread.start()

    def _work(
        self, learn: Any, sig: StopSignal, call: Callable, on_done: Callable, on_error: Callable, on_end: Callable
    ):
        try:
            with learn.guard.adopt(sig):
                result = call()
            on_done(result)
        except BaseException as e:
            self.error = e
            on_error(e, traceback.format_exc())
        finally:
            interrupts.unwatch(sig)
            try:
                on_end()
            finally:
                self._done.set()

    def stop(self, reason: str = "stopped") -> None:
        """Ask the run to end at the next batch boundary."""
        if self.running and self._sig is not None:
            self._sig.set(reason)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run ends, re-raising its error; a KeyboardInterrupt here stops it and waits for its end."""
        try:
            ended = self._done.wait(timeout)
        except KeyboardInterrupt:
            self.stop("interrupted")
            self._done.wait()  # to the next batch boundary; a second KeyboardInterrupt leaves at once
            raise
        if not ended:
            raise TimeoutError(f"{self.kind} still running after {timeout} s")
        if self.error is not None:
            raise self.error

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the run and its thread to end."""
        self._done.wait(timeout)
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)


@atexit.register
def _stop_all() -> None:
    """At the interpreter's exit, stop the runs still going and join their threads."""
    live = list(_live)  # a daemon thread left inside torch aborts the process: "terminate called without..."
    for b in live:
        b.stop()
    for b in live:
        b.join(EXIT_TIMEOUT)
