"""Where the exact copies of the state go (lr_find's, the widget's start): host memory, or files in a folder of their
own when memory is short; and the copy on disk itself, written and read back one piece at a time.

The rule of `snapshot="auto"`: in memory while the copy is under half of `available_memory()`, else on disk.
Tests make that figure what they need by replacing the module's function:
`monkeypatch.setattr(lrwidget.snapshot, "available_memory", lambda: 10**6)`; likewise `free_space` for a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import copies as state
from .copies import InFile

MODES = ("memory", "disk", "auto")
SMALL = 64 * 1024  # bytes: a tensor this small stays in memory in a copy on disk too (AdamW's step counts, biases)
SMALL_TOTAL = 16 * 2**20  # bytes of such small tensors at most; beyond, they go to files as well
PIECE = 16 * 2**20  # bytes per file: writing or reading back holds at most this much more in host memory
UNLIMITED = 2**60  # a cgroup "limit" at or above this is none (v1 writes 9223372036854771712)
MEMORY_FS = ("tmpfs", "ramfs")  # a "disk" that is memory: a copy there would take what it was meant to spare
FIX = "give Learner(snapshot_dir=...) a folder on a disk with room, or snapshot='memory' if the memory suffices"


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


def fmt_bytes(n: float) -> str:
    """`n` bytes for people: '384.0 MiB', '1.2 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# -- how much memory there is -------------------------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes this process may still take: the least of MemAvailable and the room each cgroup limit above it leaves
    (Linux); elsewhere the free physical memory; None when unknown (then "auto" keeps copies in memory)."""
    figures = [f for f in (_meminfo_available(), *_cgroup_room()) if f is not None]
    if not figures:
        figures = [f for f in (_sysconf_available(), _windows_available()) if f is not None]
    return min(figures) if figures else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, ValueError):
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _stat_field(path: Path, *names: str) -> int:
    """A field of a cgroup's memory.stat (the first of `names` there), 0 when absent."""
    try:
        fields = dict(line.split() for line in path.read_text().splitlines() if len(line.split()) == 2)
    except (OSError, ValueError):
        return 0
    return next((int(fields[n]) for n in names if n in fields), 0)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            kb = next((int(line.split()[1]) for line in f if line.startswith("MemAvailable:")), None)
    except (OSError, ValueError, IndexError):
        return None
    return None if kb is None else kb * 1024


def _cgroup_room(cgroups: str = "/proc/self/cgroup", mount: str = "/sys/fs/cgroup") -> list[int]:
    """What each memory limit on this process's cgroup and its ancestors leaves (v2 and v1); page cache that can be
    dropped (inactive files) counts as room, as `docker stats` counts it."""
    try:
        lines = Path(cgroups).read_text().splitlines()
    except OSError:
        return []
    rooms = []
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, rel = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy
            root, files = Path(mount), ("memory.max", "memory.current", ("inactive_file",))
        elif "memory" in controllers.split(","):
            root = Path(mount) / "memory"
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", ("total_inactive_file", "inactive_file"))
        else:
            continue
        for d in _ancestors(root, rel):
            limit, used = _read_int(d / files[0]), _read_int(d / files[1])
            if limit is not None and used is not None and limit < UNLIMITED:
                rooms.append(max(limit - max(used - _stat_field(d / "memory.stat", *files[2]), 0), 0))
    return rooms


def _ancestors(root: Path, rel: str) -> list[Path]:
    """The cgroup folder `rel` under `root` and those above it (a limit set higher up binds too); in a container that
    sees only its own cgroup, `root` itself."""
    d, out = root / rel.strip("/"), []
    while True:
        if (d / "cgroup.procs").exists():
            out.append(d)
        if d == root or root not in d.parents:
            return out
        d = d.parent


def _sysconf_available() -> int | None:
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # macOS has only the second: the total, a generous guess
        with contextlib.suppress(ValueError, OSError, AttributeError):
            n = os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
            if n > 0:
                return n
    return None


def _windows_available() -> int | None:
    if sys.platform != "win32":
        return None
    import ctypes

    class Status(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong)] + [
            (n, ctypes.c_ulonglong)
            for n in ("total", "avail", "total_page", "avail_page", "total_virtual", "avail_virtual", "ext")
        ]

    s = Status(dwLength=ctypes.sizeof(Status))
    return s.avail if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(s)) else None


def free_space(folder: Path) -> int:
    """Bytes free on the disk of `folder`."""
    return shutil.disk_usage(folder).free


# -- the choice ---------------------------------------------------------------------------------------------------


def _key(t: torch.Tensor) -> tuple:
    """The same key for the same tensor reached twice (tied weights): it is counted and written once."""
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def state_bytes(model: nn.Module, opt: Any) -> int:
    """Bytes of the tensors an exact copy holds: weights, buffers, gradients and optimizer state."""
    seen: dict[tuple, int] = {}

    def add(t: Any) -> Any:
        seen[_key(t)] = t.numel() * t.element_size()
        return t

    state.map_tensors(model.state_dict(), add)
    state.map_tensors([p.grad for p in model.parameters() if p.grad is not None], add)
    if opt is not None:
        state.map_tensors(opt.state_dict()["state"], add)
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
    if where(snapshot, nbytes * copies, available_memory() if snapshot == "auto" else None) == "memory":
        return state.take(model, opt, train_dl, device)
    c = DiskCopy(snapshot_dir, nbytes)
    try:
        c.small = state.take(model, opt, train_dl, device, c.keep)
    except (OSError, RuntimeError) as e:  # torch.save's RuntimeError: a disk that filled up meanwhile
        c.close()
        msg = f"writing the copy of the state ({fmt_bytes(nbytes)}) to {c.folder} failed: {e}; nothing was changed"
        raise same_kind(e, f"{msg}; {FIX}") from e
    except BaseException:  # an interrupt: nothing is left behind
        c.close()
        raise
    return c


def restore(saved: dict | DiskCopy, model: nn.Module, opt: Any, train_dl: Any) -> None:
    """Put back a copy made by `take`, which stays as it was: it can be put back again."""
    if isinstance(saved, DiskCopy):
        state.restore(saved.small, model, opt, train_dl, saved.check_open())
    else:
        state.restore(saved, model, opt, train_dl)


def discard(saved: Any) -> None:
    """Delete a copy's files (a copy in memory just goes with its last reference)."""
    if isinstance(saved, DiskCopy):
        saved.close()


def said(saved: Any) -> str:
    """Where a copy is, for the widget's status: '' in memory, '1.2 GiB on disk in /tmp/lrwidget-…' on disk."""
    return f"{fmt_bytes(saved.nbytes)} on disk in {saved.folder}" if isinstance(saved, DiskCopy) else ""


# -- the copy on disk ---------------------------------------------------------------------------------------------


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
            need, free = nbytes + nbytes // 50 + 2**20, free_space(base)
            if free < need:
                raise OSError(f"its disk has {fmt_bytes(free)} free, {fmt_bytes(need)} needed")
            self.folder = Path(tempfile.mkdtemp(dir=base, prefix="lrwidget-"))
        except OSError as e:
            raise refused(e, f"the copy of the state ({fmt_bytes(self.nbytes)})", base) from e
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        try:  # a folder made is not yet a folder written to (a read-only mount, a quota)
            probe = self.folder / "probe"
            probe.write_bytes(b"\0" * 4096)
            probe.unlink()
        except OSError as e:
            self.close()
            raise refused(e, f"the copy of the state ({fmt_bytes(self.nbytes)})", base) from e
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
        key = _key(t)
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
