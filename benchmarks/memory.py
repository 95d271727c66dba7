"""Memory lr_find needs beyond the model and optimizer themselves; the budget is one copy of their state, on the host
(`snapshot="memory"`), or next to nothing with the copy on disk (`snapshot="disk"`, what "auto" picks when memory is
short).

    python benchmarks/memory.py            # MLP 4096-4096-4096-10 with AdamW state (~400 MB), CPU (and CUDA if present)
    python benchmarks/memory.py --quick    # MLP 1024 wide (used by the tests)

The figures, each as a ratio of the state's bytes (weights, buffers, gradients, optimizer state):
- saved (exact): the bytes of the tensors lr_find keeps to restore the state (`lrwidget.state.copies.take`, captured
  while lr_find runs). Budget: 1.0 (plus a few kB of random-number states).
- saved (disk): the same with the copy on disk: what it keeps in host memory (tensors up to 64 kB). Budget: 0.0.
- start (exact): the bytes of the start an LRWidget keeps so that each Fit can begin from the same state
  (`w.from_start`, sweeps, `w.reset()`), after three Fits from it: one copy, on the host. Budget: 1.0.
- host peak: in a fresh process for each, the rise of the process's resident-set high-water mark while lr_find runs
  N steps, minus its rise while `fit` runs the same N steps (activations, gradients and the optimizer's own
  allocations cancel). glibc's mmap threshold is fixed so that freed tensors go back to the system. Budget: 1.0.
- host peak (disk): the same with the copy on disk. Budget: one file's piece (16 MiB, or the largest tensor if smaller),
  the most it holds in host memory at once on the way to disk or back.
- device peak (CUDA): the same difference of `torch.cuda.max_memory_allocated`. Budget: 0.0 (the copy is on the host).
The learner has trained an epoch before, so the optimizer state exists (the worst case: a fresh learner has none).
Then, in seconds, lr_find's copy (`learn.take_state()`) and restore (`learn.restore_state`) each way, best of 3; the
files just written are likely still in the page cache, so the restore from disk reads memory at best.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import lrwidget.state.copies  # noqa: E402
import lrwidget.state.disk  # noqa: E402
import lrwidget.state.snapshot  # noqa: E402
from lrwidget import DataLoaders, Learner  # noqa: E402

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # a fixed threshold: large blocks are mmapped and unmapped on free
BS = 32


def tensor_bytes(o: Any) -> int:
    """Bytes of the tensors and arrays held in nested dicts, lists and tuples; live parameters are not counted."""
    if isinstance(o, nn.Parameter):
        return 0
    if isinstance(o, torch.Tensor):
        return o.numel() * o.element_size()
    if isinstance(o, np.ndarray):
        return o.nbytes
    if isinstance(o, dict):
        return sum(tensor_bytes(v) for v in o.values())
    if isinstance(o, (list, tuple)):
        return sum(tensor_bytes(v) for v in o)
    return 0


def state_bytes(learn: Learner) -> int:
    """Bytes of the live state: parameters, buffers, gradients and optimizer state."""
    m = learn.model
    n = sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])
    n += sum(p.grad.numel() * p.grad.element_size() for p in m.parameters() if p.grad is not None)
    return n + sum(tensor_bytes(s) for s in learn.opt.state.values())


def make_learner(device: str, hidden: int, steps: int, snapshot: str = "memory") -> Learner:
    """An MLP hidden-hidden-hidden-10 over `steps` random batches, trained an epoch (so the optimizer has state)."""
    torch.manual_seed(0)
    x, y = torch.randn(steps * BS, hidden), torch.randint(0, 10, (steps * BS,))
    train = DataLoader(TensorDataset(x, y), batch_size=BS, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )
    learn = Learner(DataLoaders(train), model, device=device, snapshot=snapshot)
    learn.fit(1, 1e-4)
    return learn


def lr_find(learn: Learner, steps: int) -> Any:
    """An lr_find of exactly `steps` steps (an lr range too low to diverge)."""
    return learn.lr_find(start_lr=1e-7, end_lr=1e-4, num_it=steps, stop_div=False, show_plot=False)


def saved_ratio(device: str = "cpu", hidden: int = 256, steps: int = 8, snapshot: str = "memory") -> dict:
    """Bytes lr_find saves in host memory (captured from the running lr_find) against the live state's bytes."""
    learn = make_learner(device, hidden, steps, snapshot)
    captured, take = {}, lrwidget.state.copies.take

    def spy(*args) -> dict:
        captured["s"] = s = take(*args)
        return s

    lrwidget.state.copies.take = spy
    try:
        res = lr_find(learn, steps)
    finally:
        lrwidget.state.copies.take = take
    assert len(res.lrs) == steps and "s" in captured, "lr_find did not run or did not save the state"
    state, saved = state_bytes(learn), tensor_bytes(captured["s"])
    on_device = [t.device.type for t in _tensors(captured["s"]) if t.device.type != "cpu"]
    return {
        "device": device,
        "measure": "saved (exact)" if snapshot == "memory" else f"saved ({snapshot})",
        "extra_bytes": saved,
        "state_bytes": state,
        "ratio": saved / state,
        "budget": 1.0 if snapshot == "memory" else 0.0,
        "saved_on_device": len(on_device),
    }


def start_ratio(device: str = "cpu", hidden: int = 256, steps: int = 8) -> dict:
    """Bytes of the start an LRWidget keeps for its runs (`from_start`), after three Fits, against the state's."""
    from lrwidget import LRWidget

    learn = make_learner(device, hidden, steps)
    w = LRWidget(learn, epochs=1)
    w.lr_min, w.lr_steep, w.from_start = 1e-6, 1e-5, True
    for _ in range(3):
        assert w.fit(1), "the widget did not start the fit"
        w.wait()
    start = w.start.state
    on_device = [t.device.type for t in _tensors(start) if t.device.type != "cpu"]
    w.close()
    return {
        "device": device,
        "measure": "start (exact)",
        "extra_bytes": tensor_bytes(start),
        "state_bytes": state_bytes(learn),
        "ratio": tensor_bytes(start) / state_bytes(learn),
        "budget": 1.0,
        "saved_on_device": len(on_device),
    }


def _tensors(o: Any) -> list[torch.Tensor]:
    if isinstance(o, torch.Tensor) and not isinstance(o, nn.Parameter):
        return [o]
    if isinstance(o, dict):
        o = list(o.values())
    return [t for v in o for t in _tensors(v)] if isinstance(o, (list, tuple)) else []


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def child(kind: str, device: str, hidden: int, steps: int, snapshot: str = "memory") -> dict:
    """In this process: the rise of the host high-water mark (and CUDA peak) while `kind` runs `steps` steps."""
    torch.set_num_threads(1)
    learn = make_learner(device, hidden, steps, snapshot)
    gc.collect()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        dev_base = torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current resident set
        f.write("5")
    base = _status_kb("VmRSS")
    if kind == "fit":
        learn.fit(1, 1e-4)
    else:
        lr_find(learn, steps)
    if cuda:
        torch.cuda.synchronize()
    largest = max(t.numel() * t.element_size() for t in learn.model.state_dict().values())
    out = {"host_rise": (_status_kb("VmHWM") - base) * 1024, "state_bytes": state_bytes(learn), "largest": largest}
    if cuda:
        out["device_rise"] = torch.cuda.max_memory_allocated() - dev_base
    return out


def peak_ratios(device: str = "cpu", hidden: int = 1024, steps: int = 8) -> list[dict]:
    """Host (and device) peak of lr_find beyond a fit of the same steps, each in a fresh process, the copy in memory
    and on disk."""
    runs = {}
    for kind, snapshot in (("fit", "memory"), ("lr_find", "memory"), ("lr_find", "disk")):
        cmd = [sys.executable, __file__, "--child", kind, "--snapshot", snapshot, "--device", device]
        cmd += ["--hidden", str(hidden), "--steps", str(steps)]
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MALLOC_ENV}, check=False)
        if p.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
        runs[kind, snapshot] = json.loads(p.stdout.strip().splitlines()[-1])
    fit = runs["fit", "memory"]
    state = fit["state_bytes"]
    piece = min(lrwidget.state.disk.PIECE, fit["largest"])  # the most a copy on disk holds in memory at once
    rows = []
    for snapshot, measure, budget in (("memory", "host peak", 1.0), ("disk", "host peak (disk)", piece / state)):
        find = runs["lr_find", snapshot]
        rows.append(
            {
                "device": device,
                "measure": measure,
                "state_bytes": state,
                "budget": budget,
                "extra_bytes": find["host_rise"] - fit["host_rise"],
                "fit_rise": fit["host_rise"],
                "lr_find_rise": find["host_rise"],
            }
        )
        if "device_rise" in fit:
            rows.append(
                {
                    "device": device,
                    "measure": "device peak" if snapshot == "memory" else "device peak (disk)",
                    "state_bytes": state,
                    "budget": 0.0,
                    "extra_bytes": find["device_rise"] - fit["device_rise"],
                    "fit_rise": fit["device_rise"],
                    "lr_find_rise": find["device_rise"],
                }
            )
    for r in rows:
        r["ratio"] = r["extra_bytes"] / state
    return rows


def copy_times(device: str = "cpu", hidden: int = 1024, steps: int = 8, repeats: int = 3) -> list[dict]:
    """Seconds lr_find's copy (take_state) and its restore take, in memory and on disk, best of `repeats`."""
    learn = make_learner(device, hidden, steps)
    sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    rows = []
    for snapshot in ("memory", "disk"):
        learn.snapshot = snapshot
        take = restore = float("inf")
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            saved = learn.take_state()
            sync()
            t1 = time.perf_counter()
            learn.restore_state(saved)
            sync()
            t2 = time.perf_counter()
            lrwidget.state.snapshot.discard(saved)
            take, restore = min(take, t1 - t0), min(restore, t2 - t1)
        folder = lrwidget.state.disk.default_dir() if learn.snapshot_dir is None else learn.snapshot_dir
        rows.append(
            {
                "device": device,
                "measure": "copy time",
                "snapshot": snapshot,
                "state_bytes": state_bytes(learn),
                "take_s": take,
                "restore_s": restore,
                "where": "host memory" if snapshot == "memory" else str(folder),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", action="append", help="cpu, cuda (default: cpu, and cuda where present)")
    p.add_argument("--quick", action="store_true", help="a small model: check that every measure runs")
    p.add_argument("--child", choices=["fit", "lr_find"], help=argparse.SUPPRESS)
    p.add_argument("--snapshot", choices=["memory", "disk"], default="memory", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.device[0], a.hidden, a.steps, a.snapshot)))
        return []
    if a.quick:
        a.hidden, a.steps = 1024, 8
    devices = a.device or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    mb = lambda b: f"{b / 2**20:+.1f} MiB"  # noqa: E731
    print(
        f"torch {torch.__version__}; MLP {a.hidden}-{a.hidden}-{a.hidden}-10, AdamW, batch {BS}, "
        f"lr_find and fit of {a.steps} steps; devices: {', '.join(devices)}"
        + (f" ({torch.cuda.get_device_name()})" if "cuda" in devices else ""),
        flush=True,
    )
    rows, times = [], []
    for dev in devices:
        rows.append(saved_ratio(dev, a.hidden, a.steps))
        rows.append(saved_ratio(dev, a.hidden, a.steps, "disk"))
        rows.append(start_ratio(dev, a.hidden, a.steps))
        rows += peak_ratios(dev, a.hidden, a.steps)
        times += copy_times(dev, a.hidden, a.steps)
    print(f"{'device':<6} {'measure':<16} {'state':>10} {'copy / extra':>14} {'ratio':>7} {'budget':>7}")
    for r in rows:
        extra = "" if "fit_rise" not in r else f"   (lr_find rose {mb(r['lr_find_rise'])}, fit {mb(r['fit_rise'])})"
        verdict = "met" if r["ratio"] <= r["budget"] + 0.05 else "OVER"
        if r.get("saved_on_device"):
            verdict = f"OVER: {r['saved_on_device']} saved tensor(s) on the device"
        print(
            f"{r['device']:<6} {r['measure']:<16} {r['state_bytes'] / 2**20:>6.1f} MiB {mb(r['extra_bytes']):>14} "
            f"{r['ratio']:>7.3f} {r['budget']:>7.2f} {verdict}{extra}",
            flush=True,
        )
    print(f"\nlr_find's copy and restore of the state, best of 3 (temporary folder: {tempfile.gettempdir()})")
    print(f"{'device':<6} {'snapshot':<16} {'state':>10} {'take':>9} {'restore':>9}  where")
    for r in times:
        print(
            f"{r['device']:<6} {r['snapshot']:<16} {r['state_bytes'] / 2**20:>6.1f} MiB {r['take_s']:>7.3f} s "
            f"{r['restore_s']:>7.3f} s  {r['where']}",
            flush=True,
        )
    return rows + times


if __name__ == "__main__":
    main()
