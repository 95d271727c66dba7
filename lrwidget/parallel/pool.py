"""The worker processes of num_processes > 1: spawned with torch.multiprocessing, kept between runs, talked to through
pipes, and ended so that no process is left, multiprocessing's resource tracker included.

No queue, lock or semaphore: those are named semaphores, which multiprocessing has its resource tracker keep, and
a pipe each way per worker is all a run needs.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing import connection, resource_tracker
from typing import Any

import torch.multiprocessing as mp

LIVE: weakref.WeakSet = weakref.WeakSet()  # the pools whose workers run
_tracker: dict[str, int | None] = {"pid": None}  # the resource tracker that spawning lrwidget's workers started


class Inbox:
    """A worker's end of the kernel's pipe: the jobs, as bytes."""

    def __init__(self, conn: connection.Connection):
        self.conn = conn

    def get(self) -> bytes | None:
        """The next job; None when the kernel says to end, or has gone."""
        try:
            return self.conn.recv_bytes() or None
        except (EOFError, OSError):
            return None


class Outbox:
    """A worker's end of its pipe to the kernel: each message goes with the time it was sent."""

    def __init__(self, conn: connection.Connection):
        self.conn = conn

    def put(self, msg: tuple) -> None:
        """Send `msg` (pickled first: one that does not pickle raises here, and nothing is sent)."""
        self.conn.send((time.monotonic(), msg))  # CLOCK_MONOTONIC: one clock for every process of the machine


def _main(target: Callable, rank: int, down: connection.Connection, up: connection.Connection, *args: Any) -> None:
    target(rank, Inbox(down), Outbox(up), *args)


class Pool:
    """N spawned processes running `target(rank, Inbox, Outbox, stop, *args)`, a pipe each way per process."""

    def __init__(self, n: int, target: Callable, args: tuple):
        ctx = mp.get_context("spawn")
        self.n = n
        self.stop = ctx.Value("i", 0, lock=False)  # the kernel writes, the workers read: one int, no lock
        down = [ctx.Pipe(duplex=False) for _ in range(n)]  # kernel -> rank r: the jobs
        up = [ctx.Pipe(duplex=False) for _ in range(n)]  # rank r -> kernel: its events
        self.cmds = [w for _, w in down]
        self.events = [r for r, _ in up]
        self._early: dict[int, tuple] = {}  # a message read from rank r while an earlier one of another was taken
        self.procs = [
            ctx.Process(
                target=_main,
                args=(target, r, down[r][0], up[r][1], self.stop, *args),
                daemon=True,  # a kernel that exits takes them with it
                name=f"lrwidget-rank{r}",
            )
            for r in range(n)
        ]
        tracker_before = _tracker_pid()
        try:
            for p in self.procs:
                p.start()
        finally:
            # the workers hold their ends now: with ours closed, a worker that dies is an EOF, not a silent hang
            for c in [r for r, _ in down] + [w for _, w in up]:
                c.close()
            if tracker_before is None and _tracker_pid() is not None:
                _tracker["pid"] = _tracker_pid()
            LIVE.add(self)

    @property
    def alive(self) -> bool:
        """True while every worker runs."""
        return all(p.is_alive() for p in self.procs)

    def send(self, blob: bytes) -> None:
        """The same job to every worker (a worker gone: RuntimeError naming it)."""
        for r, c in enumerate(self.cmds):
            try:
                c.send_bytes(blob)
            except OSError:  # its end of the pipe closed: it died
                raise RuntimeError(f"worker rank {r} ended before it took the run ({self.exit_codes()})") from None

    def receive(self, timeout: float) -> tuple | None:
        """The next message of any worker within `timeout` seconds, else None; RuntimeError if a worker ended.
        Messages of several workers come in the order they were sent (rank 1's error before the error rank 0 then
        raised because rank 1 left its collective)."""
        waiting = [c for r, c in enumerate(self.events) if r not in self._early]
        for c in connection.wait(waiting, 0 if self._early else timeout):
            r = self.events.index(c)
            try:
                self._early[r] = c.recv()
            except (EOFError, OSError):
                self._early[r] = (time.monotonic(), None)
        if not self._early:
            return None
        r = min(self._early, key=lambda r: self._early[r][0])
        if self._early[r][1] is None:  # its pipe closed: it ended (and stays so, for a next call)
            self.procs[r].join(2.0)  # its exit code, once it is reaped
            raise RuntimeError(f"a worker process ended without a word ({self.exit_codes()})")
        return self._early.pop(r)[1]

    def exit_codes(self) -> str:
        """The exit codes of the workers that have ended, as said in errors."""
        codes = {p.name: p.exitcode for p in self.procs if not p.is_alive()}
        return f"exit codes {codes}"

    def close(self, timeout: float = 5.0) -> None:
        """End every worker: asked first, then terminated, then killed; none is left."""
        for c in self.cmds:
            with contextlib.suppress(Exception):
                os.set_blocking(c.fileno(), False)  # a worker that does not read never holds this up
                c.send_bytes(b"")
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(deadline - time.monotonic(), 0.0))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(2.0)
        for c in (*self.cmds, *self.events):
            c.close()
        LIVE.discard(self)
        if not LIVE:
            end_tracker()

    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [p.pid for p in self.procs if p.pid is not None]


def _tracker_pid() -> int | None:
    return getattr(resource_tracker._resource_tracker, "_pid", None)


def end_tracker() -> None:
    """End multiprocessing's resource tracker if spawning lrwidget's workers started it (every spawn starts one, and
    it would stay a child of the kernel for good); the next spawn starts it again."""
    t, pid = resource_tracker._resource_tracker, _tracker["pid"]
    if pid is None or getattr(t, "_pid", None) != pid or getattr(t, "_fd", None) is None:
        return
    _tracker["pid"] = None
    with t._lock:
        os.close(t._fd)  # its pipe closed: it ends
        t._fd = t._pid = None
    for _ in range(100):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                time.sleep(0.01)
                continue
        return
    # a process forked from the kernel (a DataLoader's worker) holds a copy of its pipe: it ends with that one
    threading.Thread(target=_reap, args=(pid,), name="lrwidget-reap-tracker", daemon=True).start()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
