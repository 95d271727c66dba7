"""How the workers start: 2 gloo workers that import torch, join a group and all-reduce once, started by fork, by
spawn, and by lrwidget's own launcher (fresh Pythons through subprocess, lrwidget.parallel.pool).

    python benchmarks/start_methods.py    # CPU, median of 5 each; the parent has imported torch, as a kernel has

fork is the fastest to start but fails in a kernel that has used CUDA ("Cannot re-initialize CUDA in forked
subprocess"); spawn starts afresh but imports the parent's main module again in every worker; lrwidget's launcher
starts afresh without it. lrwidget keeps its workers between runs, so only a learner's first run pays.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _worker(rank: int, port: int, q) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    dist.all_reduce(torch.ones(1))
    dist.destroy_process_group()
    q.put(rank)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _all_reduce_once(rank) -> float:
    import torch

    return float(rank.sum(torch.ones(1)).item())


def _lrwidget_start_up() -> float:
    from lrwidget.parallel.messages import Failed, Finished
    from lrwidget.parallel.pool import Pool

    t = time.perf_counter()
    pool = Pool(2, "gloo")
    try:
        pool.submit(_all_reduce_once)
        done = 0
        while done < 2:
            msg = pool.receive(1.0)
            if isinstance(msg, Failed):
                raise RuntimeError(f"{msg.kind}: {msg.message}\n{msg.traceback}")
            done += isinstance(msg, Finished)
        return time.perf_counter() - t
    finally:
        pool.close()


def start_up(method: str) -> float:
    """Seconds from starting 2 workers with `method` to both having joined the group and all-reduced once."""
    if method == "lrwidget":
        return _lrwidget_start_up()
    ctx = mp.get_context(method)
    q, port = ctx.Queue(), _free_port()
    t = time.perf_counter()
    procs = [ctx.Process(target=_worker, args=(r, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    for _ in procs:
        q.get(timeout=120)
    dt = time.perf_counter() - t
    for p in procs:
        p.join()
    return dt


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    for method in ("fork", "spawn", "lrwidget"):
        ts = [start_up(method) for _ in range(5)]
        print(f"{method:<8} median {statistics.median(ts):.2f} s (min {min(ts):.2f}, max {max(ts):.2f}; 5 runs)")
