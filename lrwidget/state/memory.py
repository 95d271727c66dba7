"""How much memory this process may still take (MemAvailable, cgroup v1/v2 limits, sysconf, Windows) and how much
disk a folder has: what snapshot="auto" decides on.

Tests make these figures what they need by replacing this module's functions:
`monkeypatch.setattr(lrwidget.state.memory, "available_memory", lambda: 10**6)`; likewise `free_space`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

UNLIMITED = 2**60  # a cgroup "limit" at or above this is none (v1 writes 9223372036854771712)


def fmt_bytes(n: float) -> str:
    """`n` bytes for people: '384.0 MiB', '1.2 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


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
