"""Ctrl-C and the kernel's interrupt as a Stop: for a run on the main thread, and for runs in worker threads.

Signal handlers can only be set from the main thread, and Python calls them there, between bytecodes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from .kernel import kernel

_watched: set[Any] = set()  # stop signals of the runs in worker threads that an interrupt ends
_watched_lock = threading.RLock()  # re-entrant: the handler takes it on the main thread, which may hold it already


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def as_stop(sig: Any) -> Iterator[None]:
    """On the main thread, a Ctrl-C during the block stops the run at its next batch, then raises KeyboardInterrupt."""
    before = signal.getsignal(signal.SIGINT) if _on_main_thread() else None
    if before is None or before == signal.SIG_IGN:  # a worker thread, or a process that ignores Ctrl-C
        yield
        return
    hits = []

    def handler(signum: int, frame: Any) -> None:
        hits.append(signum)
        if len(hits) > 1:  # a second Ctrl-C: the user will not wait for the batch boundary
            raise KeyboardInterrupt
        sig.set("interrupted")

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
    if hits:
        raise KeyboardInterrupt


class _Chain:
    """A SIGINT handler that ends every watched run, then does what the handler it replaced did."""

    def __init__(self, before: Any):
        self.before = before

    def __call__(self, signum: int, frame: Any) -> None:
        with _watched_lock:
            watched = list(_watched)
        for sig in watched:
            sig.set("interrupted")
        if callable(self.before):
            self.before(signum, frame)
        elif self.before == signal.SIG_DFL:
            signal.default_int_handler(signum, frame)
        # SIG_IGN: an idle Jupyter kernel ignores Ctrl-C; the interrupt only ended the runs


def _chained(h: Any) -> Any:
    return h if isinstance(h, _Chain) or h is None else _Chain(h)


def watch(sig: Any) -> None:
    """Let an interrupt stop the worker-thread run of `sig` until `unwatch(sig)`."""
    with _watched_lock:
        _watched.add(sig)
    if not _on_main_thread():
        return
    signal.signal(signal.SIGINT, _chained(signal.getsignal(signal.SIGINT)))
    k = kernel()
    # ipykernel sets Python's default handler around each message it handles (a cell, a click), then puts back the
    # handler it saved, SIG_IGN: chain that one too, so that an interrupt of the idle kernel stops the run
    if k is not None and hasattr(k, "saved_sigint_handler"):
        k.saved_sigint_handler = _chained(k.saved_sigint_handler)


def unwatch(sig: Any) -> None:
    """An interrupt no longer concerns `sig` (its run ended)."""
    with _watched_lock:
        _watched.discard(sig)
