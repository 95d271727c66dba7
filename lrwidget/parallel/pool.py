"""N worker processes, started as fresh Pythons (the user's main module never runs in them), joined in one
torch.distributed group, kept between jobs, talked to through a pipe each way, and all ended by `close()`.

The launcher is `subprocess` with lrwidget's own entry point (`worker.main`, run by `python -c`), not
multiprocessing's spawn: spawn imports the parent's `__main__` again in each child, so a script's top-level code
ran N + 1 times, and a script without the `if __name__ == "__main__":` guard failed. What the workers need travels
by value (pickling.py), so they never need the main module. No queue, lock or semaphore either: a pipe each way per
worker is all a job needs, and nothing (not even multiprocessing's resource tracker) outlives `close()`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Iterable
from multiprocessing.connection import Connection, wait
from typing import Any

from . import pickling
from .messages import Close, Gone, Job, Ready, Stop
from .worker import BOOT

LIVE: weakref.WeakSet[Pool] = weakref.WeakSet()  # the pools whose workers run


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pool:
    """N worker processes in one process group (gloo on CPU, NCCL on CUDA), running one job at a time."""

    def __init__(self, n: int, backend: str):
        if os.name == "nt":
            raise OSError("num_processes > 1 starts its workers with inherited pipes, which Windows lacks: use 1")
        self.n, self.backend = n, backend
        self.ready = 0  # workers that joined the group
        self.number = 0  # the last job's number
        self.held: dict[int, Any] = {}  # the objects the workers keep, by id (kept alive here: ids stay theirs)
        self._queued: list[bytes] = []  # messages for every worker, sent once all of them read their pipes
        self._early: dict[int, Any] = {}  # a message read from rank r while an earlier one of another was taken
        self.cmds: list[Connection] = []
        self.events: list[Connection] = []
        self.procs: list[subprocess.Popen] = []
        port = free_port()
        try:
            for r in range(n):
                down_r, down_w = os.pipe()  # kernel -> rank r: jobs, Stop, Close
                up_r, up_w = os.pipe()  # rank r -> kernel: its messages
                args = {"rank": r, "world": n, "port": port, "backend": backend, "inbox": down_r, "outbox": up_w}
                try:
                    self.procs.append(
                        subprocess.Popen(
                            [sys.executable, "-c", BOOT, json.dumps(sys.path), json.dumps(args)],
                            pass_fds=(down_r, up_w),
                            stdin=subprocess.DEVNULL,
                        )
                    )
                finally:
                    os.close(down_r)  # the worker holds these ends now: its death is an EOF, not a silent hang
                    os.close(up_w)
                self.cmds.append(Connection(down_w, readable=False))
                self.events.append(Connection(up_r, writable=False))
        except BaseException:
            self.close(timeout=0.0)
            raise
        LIVE.add(self)

    @property
    def alive(self) -> bool:
        """True while every worker runs."""
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def submit(self, task: Any, keep: Iterable[Any] = (), what: str = "the job") -> int:
        """Send `task(rank)` to every worker (by value; TypeError, before anything is sent, if it cannot be); the
        objects of `keep` stay in the workers for later jobs, which then send only their ids; `what` names the task in
        that TypeError. Returns the job's number."""
        want = pickling.with_held(keep)
        fresh = want.keys() != self.held.keys()
        blob = pickling.dumps(task, want, what)
        kept = pickling.dumps(want) if fresh else None
        self.number += 1
        self.held = want
        self._post(Job(self.number, blob, kept))
        return self.number

    def request_stop(self, reason: str) -> None:
        """Ask the running job to end at its ranks' next agreement."""
        self._post(Stop(self.number, reason))

    def _post(self, msg: Any) -> None:
        self._queued.append(pickling.dumps(msg))
        self._flush()

    def _flush(self) -> None:
        if self.ready < self.n:  # a worker still importing torch does not read: a big job would block this send
            return
        for blob in self._queued:
            for r, c in enumerate(self.cmds):
                try:
                    c.send_bytes(blob)
                except OSError:  # its end of the pipe closed: it died
                    raise RuntimeError(f"worker rank {r} ended before it took the job ({self.exit_codes()})") from None
        self._queued.clear()

    def receive(self, timeout: float) -> Any:
        """The next message of any worker within `timeout` seconds (Gone for one whose pipe closed), else None.
        Messages of several workers come in the order they were sent (rank 1's error before the error rank 0 then
        raised because rank 1 left its collective). Ready messages are counted here, not returned."""
        while True:
            waiting = [c for r, c in enumerate(self.events) if r not in self._early]
            for c in wait(waiting, 0 if self._early else timeout):
                r = self.events.index(c)
                try:
                    self._early[r] = pickling.receive(c)
                except (EOFError, OSError):
                    self._early[r] = Gone(r)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.procs[r].wait(2.0)  # its exit code, once it is reaped
            if not self._early:
                return None
            r = min(self._early, key=lambda r: self._early[r].sent)
            msg = self._early[r] if isinstance(self._early[r], Gone) else self._early.pop(r)  # Gone stays: it ended
            if not isinstance(msg, Ready):
                return msg
            self.ready += 1
            self._flush()

    def exit_codes(self) -> str:
        """The exit codes of the workers that have ended, as said in errors."""
        codes = {f"lrwidget-rank{r}": p.poll() for r, p in enumerate(self.procs) if p.poll() is not None}
        return f"exit codes {codes}"

    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [p.pid for p in self.procs]

    def close(self, timeout: float = 5.0) -> None:
        """End every worker: asked first, then terminated, then killed; none is left."""
        close = pickling.dumps(Close())
        for c in self.cmds:
            with contextlib.suppress(Exception):
                os.set_blocking(c.fileno(), False)  # a worker that does not read never holds this up
                c.send_bytes(close)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(deadline - time.monotonic(), 0.0))
        for p in self.procs:
            for end in (p.terminate, p.kill):
                if p.poll() is None:
                    end()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(2.0)
        for c in (*self.cmds, *self.events):
            c.close()
        self.cmds, self.events, self.held = [], [], {}
        LIVE.discard(self)


@atexit.register
def _close_all() -> None:
    """At the interpreter's exit, end the workers still running (they would otherwise outlive it)."""
    for pool in list(LIVE):
        pool.close(timeout=2.0)
