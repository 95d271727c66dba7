"""The typed messages between the kernel and its worker processes, each stamped with the time it was sent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


def _now() -> float:
    return time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine


# -- kernel -> worker ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Run a task: `task` is the pickled callable `task(rank) -> result`; `keep` (pickled {id: object}, or None to
    keep what the worker holds) replaces the objects the worker keeps for this and later jobs."""

    number: int
    task: bytes
    keep: bytes | None = None


@dataclass(frozen=True)
class Stop:
    """Ask job `number` to end at its next agreement ('stopped' or 'interrupted')."""

    number: int
    reason: str


@dataclass(frozen=True)
class Close:
    """End the worker."""


# -- worker -> kernel ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The worker joined the process group and reads its jobs."""

    rank: int
    sent: float = field(default_factory=_now)


@dataclass(frozen=True)
class Report:
    """What a rank said during job `number` (the task's own typed events)."""

    rank: int
    number: int
    payload: Any
    sent: float = field(default_factory=_now)


@dataclass(frozen=True)
class Finished:
    """The rank's part of job `number` is over (its copies deleted, its state put back): its result."""

    rank: int
    number: int
    result: Any
    sent: float = field(default_factory=_now)


@dataclass(frozen=True)
class Failed:
    """Job `number` raised in this rank: the error itself (pickled; None where it cannot be rebuilt), its type,
    message and traceback."""

    rank: int
    number: int
    error: bytes | None
    kind: str
    message: str
    traceback: str
    sent: float = field(default_factory=_now)


@dataclass(frozen=True)
class Gone:
    """The worker's pipe closed: it ended (read by the kernel, never sent)."""

    rank: int
    sent: float = field(default_factory=_now)
