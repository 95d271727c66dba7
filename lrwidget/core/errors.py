"""What lrwidget adds to an error it lets through: notes (on Python 3.10 too), the hint an out-of-memory error gains,
and the traceback of a worker process. The error keeps its type and message."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

OOM_HINT = (
    "lrwidget: the device ran out of memory. Use a smaller batch size (the DataLoader's batch_size), "
    "Learner(..., mixed_precision='bf16') (or 'fp16'), or a smaller model"
)


def is_out_of_memory(e: BaseException) -> bool:
    """True for torch's out-of-memory error, and the RuntimeError that MPS and the CPU allocator raise instead."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "not enough memory" in msg)


def add_note(e: BaseException, note: str) -> None:
    """Add `note` to the exception's notes once (Python 3.11's add_note; the same list on 3.10)."""
    notes = getattr(e, "__notes__", None)
    if notes is not None and note in notes:
        return
    if hasattr(e, "add_note"):
        e.add_note(note)
    else:
        e.__notes__ = [*(notes or []), note]


@contextlib.contextmanager
def oom_hint() -> Iterator[None]:
    """An out-of-memory error raised in the block keeps its type and message, and gains what to do about it."""
    try:
        yield
    except BaseException as e:
        if is_out_of_memory(e):
            add_note(e, OOM_HINT)
        raise


def weights_unavailable(e: BaseException) -> bool:
    """True for what fetching or reading pretrained weights raises: no network or file (OSError: urllib's, requests'
    and huggingface_hub's errors are OSErrors), or a download that is corrupt (a bad hash, a broken archive)."""
    if isinstance(e, OSError):
        return True
    msg = str(e)
    return isinstance(e, RuntimeError) and any(m in msg for m in ("invalid hash", "PytorchStreamReader", "zip archive"))


class RemoteTraceback(Exception):
    """The traceback of an error in a worker process, as text: the cause of that error, raised again here."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f"\n{self.tb}"
