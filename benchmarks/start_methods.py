"""Why the workers are spawned: start-up of 2 gloo workers that import torch and join a group, fork against spawn.

    python benchmarks/start_methods.py    # CPU, median of 5 each; the parent has imported torch, as a kernel has

fork is faster to start but fails in a kernel that has used CUDA ("Cannot re-initialize CUDA in forked
subprocess"); spawn starts afresh, and lrwidget keeps its spawned workers between runs, so only the first pays.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import statistics
import time


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


def start_up(method: str) -> float:
    """Seconds from starting 2 workers with `method` to both having joined the group and all-reduced once."""
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
    for method in ("fork", "spawn"):
        ts = [start_up(method) for _ in range(5)]
        print(f"{method:<5} median {statistics.median(ts):.2f} s (min {min(ts):.2f}, max {max(ts):.2f}; 5 runs)")
