"""Where the exact copies of the state go (lr_find's, the widget's start): host memory, or files in a folder of their
own (disk.py) when memory is short.

The rule of `snapshot="auto"`: in memory while the copy is under half of `memory.available_memory()`, else on disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import copies as exact
from . import memory
from .disk import FIX, DiskCopy, same_kind

MODES = ("memory", "disk", "auto")


def check_mode(snapshot: Any) -> str:
    """`snapshot` checked: 'memory', 'disk' or 'auto'."""
    if snapshot not in MODES:
        raise ValueError(f"snapshot must be 'memory', 'disk' or 'auto' (memory while it fits), got {snapshot!r}")
    return snapshot


def check_dir(snapshot_dir: Any) -> Path | None:
    """`snapshot_dir` checked: None (a temporary folder) or a path."""
    if snapshot_dir is None:
        return None
    if not isinstance(snapshot_dir, (str, os.PathLike)):
        raise TypeError(f"snapshot_dir must be a folder's path or None, got {type(snapshot_dir).__name__}")
    return Path(snapshot_dir).expanduser()


def state_bytes(model: nn.Module, opt: Any) -> int:
    """Bytes of the tensors an exact copy holds: weights, buffers, gradients and optimizer state."""
    seen: dict[tuple, int] = {}

    def add(t: Any) -> Any:
        seen[exact.tensor_key(t)] = t.numel() * t.element_size()
        return t

    exact.map_tensors(model.state_dict(), add)
    exact.map_tensors([p.grad for p in model.parameters() if p.grad is not None], add)
    if opt is not None:
        exact.map_tensors(opt.state_dict()["state"], add)
    return sum(seen.values())


def where(snapshot: str, nbytes: int, available: int | None) -> str:
    """Where a copy of `nbytes` goes: 'memory' or 'disk' as `snapshot` says; for 'auto', memory while the copy is
    under half of `available` (None: unknown, memory)."""
    if snapshot != "auto":
        return snapshot
    return "memory" if available is None or nbytes < available / 2 else "disk"


def take(
    model: nn.Module,
    opt: Any,
    train_dl: Any,
    device: torch.device,
    snapshot: str = "auto",
    snapshot_dir: str | Path | None = None,
    copies: int = 1,
) -> dict | DiskCopy:
    """An exact copy of the state (state.take's), in memory (a dict) or on disk (a DiskCopy), as `snapshot` says;
    `copies`: the processes of this machine that each take one at once (the ranks of num_processes > 1)."""
    nbytes = state_bytes(model, opt)
    if where(snapshot, nbytes * copies, memory.available_memory() if snapshot == "auto" else None) == "memory":
        return exact.take(model, opt, train_dl, device)
    c = DiskCopy(snapshot_dir, nbytes)
    try:
        c.small = exact.take(model, opt, train_dl, device, c.keep)
    except (OSError, RuntimeError) as e:  # torch.save's RuntimeError: a disk that filled up meanwhile
        c.close()
        size = memory.fmt_bytes(nbytes)
        msg = f"writing the copy of the state ({size}) to {c.folder} failed: {e}; nothing was changed"
        raise same_kind(e, f"{msg}; {FIX}") from e
    except BaseException:  # an interrupt: nothing is left behind
        c.close()
        raise
    return c


def restore(saved: dict | DiskCopy, model: nn.Module, opt: Any, train_dl: Any) -> None:
    """Put back a copy made by `take`, which stays as it was: it can be put back again."""
    if isinstance(saved, DiskCopy):
        exact.restore(saved.small, model, opt, train_dl, saved.check_open())
    else:
        exact.restore(saved, model, opt, train_dl)


def discard(saved: Any) -> None:
    """Delete a copy's files (a copy in memory just goes with its last reference)."""
    if isinstance(saved, DiskCopy):
        saved.close()


def said(saved: Any) -> str:
    """Where a copy is, for the widget's status: '' in memory, '1.2 GiB on disk in /tmp/lrwidget-…' on disk."""
    return f"{memory.fmt_bytes(saved.nbytes)} on disk in {saved.folder}" if isinstance(saved, DiskCopy) else ""
