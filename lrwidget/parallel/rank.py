"""A process's place among the processes that train together, and all the training loop asks of the others."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .messages import Close, Stop
from .pickling import receive

STOP_EVERY = 8  # batches between the ranks' agreements on a Stop: one tiny all-reduce, never a sync per batch
STOPS = {0: "", 1: "stopped", 2: "interrupted"}
CODES = {v: k for k, v in STOPS.items()}


class Alone:
    """One process, with nobody to agree with."""

    rank, world, stop_every = 0, 1, 0

    def agreed_stop(self) -> str:
        """No Stop but the run's own signal, which the loop reads at every batch."""
        return ""

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """`t` itself."""
        return t

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """`t` itself."""
        return t

    def report(self, payload: Any) -> None:
        """Nobody to tell: the observers of this process hear the run directly."""


@dataclass
class Member:
    """One of `world` processes in a torch.distributed group, running job `number` for the kernel."""

    rank: int
    world: int
    device: torch.device
    number: int
    inbox: Any  # the kernel's pipe to this process: Stop or Close arrive here during a job
    send: Callable[[Any], None]  # a message to the kernel
    stop_every: int = STOP_EVERY
    asked: str = ""  # what the kernel asked for so far: '', 'stopped' or 'interrupted'
    closing: bool = False  # the kernel said Close (or went) during the job: the worker ends after it

    def agreed_stop(self) -> str:
        """Every rank's answer to "stop now?", the same on all of them (what the kernel asked, read by each)."""
        import torch.distributed as dist

        self._read_inbox()
        t = torch.tensor([CODES[self.asked]], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return STOPS.get(int(t.item()), "stopped")

    def _read_inbox(self) -> None:
        try:
            while not self.asked and self.inbox.poll(0):
                msg = receive(self.inbox)
                if isinstance(msg, Close):
                    self.asked, self.closing = "interrupted", True
                elif isinstance(msg, Stop) and msg.number == self.number:
                    self.asked = msg.reason
        except (EOFError, OSError):  # the kernel has gone: nobody waits for this run
            self.asked, self.closing = "interrupted", True

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of `t` over the ranks."""
        import torch.distributed as dist

        t = t.detach().clone()
        dist.all_reduce(t)
        return t / self.world

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of `t` over the ranks (in place)."""
        import torch.distributed as dist

        dist.all_reduce(t)
        return t

    def report(self, payload: Any) -> None:
        """Tell the kernel `payload` (the task's own typed event)."""
        from .messages import Report

        self.send(Report(self.rank, self.number, payload))
