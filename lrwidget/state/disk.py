"""An exact copy of the state on disk: its folder (made where there is room, refused with what to do where there
is none), its tensors written and read back one piece at a time, its files deleted with it."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch

from . import memory
from .copies import InFile, tensor_key

SMALL = 64 * 1024  # bytes: a tensor this small stays in memory in a copy on disk too (AdamW's step counts, biases)
SMALL_TOTAL = 16 * 2**20  # bytes of such small tensors at most; beyond, they go to files as well
PIECE = 16 * 2**20  # bytes per file: writing or reading back holds at most this much more in host memory
MEMORY_FS = ("tmpfs", "ramfs")  # a "disk" that is memory: a copy there would take what it was meant to spare
FIX = "give Learner(snapshot_dir=...) a folder on a disk with room, or snapshot='memory' if the memory suffices"


def same_kind(e: BaseException, msg: str) -> OSError:
    """`msg` as an OSError of the class of `e` where it is one (a PermissionError stays one), else a plain OSError."""
    cls = type(e) if isinstance(e, OSError) and type(e).__module__ == "builtins" else OSError
    return cls(msg)


def refused(e: OSError, what: str, base: Path) -> OSError:
    """The error for `what` that cannot be written to `base`, of the class of `e`, saying what to do."""
    why = str(e) if e.strerror is None else e.strerror
    return same_kind(e, f"{what} cannot be written to {base}: {why}; nothing was changed; {FIX}")


def default_dir() -> Path:
    """The system's temporary folder, unless it lives in memory (tmpfs): then the user's cache folder."""
    tmp = Path(tempfile.gettempdir())
    if _fs_type(tmp) not in MEMORY_FS:
        return tmp
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lrwidget"


def _fs_type(path: Path) -> str:
    """The file system type of `path` (Linux's /proc/self/mounts: the deepest mount point above it), '' if unknown."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except (OSError, ValueError):
        return ""
    path = path.resolve()
    best = max((m for m in mounts if len(m) == 2 and path.is_relative_to(m[0])), key=lambda m: len(m[0]), default=None)
    return best[1] if best else ""


def _make_base(base: Path) -> None:
    """`base` made if missing; OSError for a file in its place, or a folder whose mode lets nobody write."""
    if base.exists() and not base.is_dir():
        raise NotADirectoryError(f"{base} is a file, not a folder")
    base.mkdir(parents=True, exist_ok=True)
    mode = base.stat().st_mode
    if not mode & 0o222:  # read-only by its mode: refused also for root, whom the mode would not stop
        raise PermissionError(errno.EACCES, f"Permission denied (the folder is read-only, mode {oct(mode & 0o777)})")


def scratch_folder(snapshot_dir: Path | None, prefix: str = "lrwidget-") -> Path:
    """A new folder of its own in `snapshot_dir` (None: default_dir()), made now; its error says what to do."""
    base = default_dir() if snapshot_dir is None else Path(snapshot_dir)
    try:
        _make_base(base)
        return Path(tempfile.mkdtemp(dir=base, prefix=prefix))
    except OSError as e:
        raise refused(e, "the copies of the state", base) from e


def ranks_folder(old: Path | None, snapshot: str, snapshot_dir: Path | None) -> Path | None:
    """The folder the ranks of num_processes > 1 write their copies in, owned by their pool, which deletes it as it
    ends them (a rank killed runs no finalizer); `old` if it still serves, None for copies in memory."""
    base = default_dir() if snapshot_dir is None else Path(snapshot_dir)
    if old is not None and (snapshot == "memory" or old.parent != base or not old.is_dir()):
        shutil.rmtree(old, ignore_errors=True)
        old = None
    return old if snapshot == "memory" or old is not None else scratch_folder(base, "lrwidget-ranks-")


class DiskCopy:
    """An exact copy of the state with its tensors in files of a folder of its own (a few small ones and the random
    states in memory); restorable again and again, deleted by `close()`, when it is garbage, or at exit."""

    def __init__(self, snapshot_dir: str | Path | None, nbytes: int):
        base = default_dir() if snapshot_dir is None else Path(snapshot_dir)
        self.nbytes = nbytes
        try:
            _make_base(base)
            need, free = nbytes + nbytes // 50 + 2**20, memory.free_space(base)
            if free < need:
                raise OSError(f"its disk has {memory.fmt_bytes(free)} free, {memory.fmt_bytes(need)} needed")
            self.folder = Path(tempfile.mkdtemp(dir=base, prefix="lrwidget-"))
        except OSError as e:
            raise refused(e, f"the copy of the state ({memory.fmt_bytes(self.nbytes)})", base) from e
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        try:  # a folder made is not yet a folder written to (a read-only mount, a quota)
            probe = self.folder / "probe"
            probe.write_bytes(b"\0" * 4096)
            probe.unlink()
        except OSError as e:
            self.close()
            raise refused(e, f"the copy of the state ({memory.fmt_bytes(self.nbytes)})", base) from e
        self.small: dict = {}  # what state.take returns, with InFile in place of the tensors written
        self._kept = 0
        self._names: list[str] = []  # the files written
        self._seen: dict[tuple, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self.small[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.small[key] = value

    @property
    def closed(self) -> bool:
        """True once the files are deleted."""
        return not self._finalizer.alive

    def close(self) -> None:
        """Delete the folder and its files (again: nothing)."""
        self._finalizer()

    def __enter__(self) -> DiskCopy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def check_open(self) -> DiskCopy:
        """This copy, if its files are still there."""
        # checked before anything is put back: a copy half read would leave a state that is neither
        gone = self.closed or not all((self.folder / n).is_file() for n in self._names)
        if gone:
            raise RuntimeError(
                f"the copy of the state in {self.folder} was deleted (or files of it), so it cannot be put back; "
                "nothing was changed: take a new one (w.mark_start())"
            )
        return self

    def keep(self, t: torch.Tensor) -> torch.Tensor | InFile:
        """Write `t` to files of this folder, PIECE bytes each (a small tensor: kept in memory, copied)."""
        t = t.detach()
        n = t.numel() * t.element_size()
        if n <= SMALL and self._kept + n <= SMALL_TOTAL:
            self._kept += n
            return t.to("cpu", copy=True)
        key = tensor_key(t)
        if key in self._seen:
            return self._seen[key]
        flat = t.contiguous().view(-1)  # a copy only for a tensor not contiguous already, which is rare
        step = max(PIECE // t.element_size(), 1)
        names = []
        for a in range(0, max(flat.numel(), 1), step):
            piece = flat[a : a + step]
            # torch.save writes a view's whole storage: each piece gets its own, unless it is one already
            whole = piece.device.type == "cpu" and piece.untyped_storage().nbytes() == piece.numel() * t.element_size()
            name = f"{len(self._names):06d}.pt"
            torch.save(piece if whole else piece.to("cpu", copy=True), self.folder / name)
            self._names.append(name)
            names.append(name)
        self._seen[key] = leaf = InFile(tuple(names), t.shape, t.dtype)
        return leaf

    def read_into(self, leaf: torch.Tensor | InFile, dst: torch.Tensor) -> None:
        """Copy the tensor of `leaf` into `dst`, one file at a time."""
        if isinstance(leaf, torch.Tensor):
            dst.copy_(leaf)
            return
        if not dst.is_contiguous():
            dst.copy_(self.read(leaf, "cpu"))
            return
        flat, a = dst.view(-1), 0
        for name in leaf.names:
            piece = torch.load(self.folder / name, weights_only=True, map_location="cpu")
            flat[a : a + piece.numel()].copy_(piece)
            a += piece.numel()

    def read(self, leaf: torch.Tensor | InFile, device: torch.device | str) -> torch.Tensor:
        """The tensor of `leaf`, new, on `device`."""
        if isinstance(leaf, torch.Tensor):
            return leaf.to(device, copy=True)
        dst = torch.empty(leaf.shape, dtype=leaf.dtype, device=device)
        self.read_into(leaf, dst)
        return dst
