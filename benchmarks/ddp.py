"""lrwidget's fit_one_cycle in 2 processes (num_processes=2, DDP over gloo on CPU) against a hand-written DDP loop.

    python benchmarks/ddp.py            # MLP 784-64-10 on 32768 random samples, 3 epochs, 5 repetitions
    python benchmarks/ddp.py --quick    # a smoke run (used by the tests)
    python benchmarks/ddp.py --device cuda   # every visible GPU (NCCL), lrwidget's side only (gpu_check.sh runs it)

Both sides do the same work in the same run: the same model, each process's shard from a DistributedSampler,
AdamW with the same groups, a one-cycle schedule, the loss kept per batch, validation per epoch summed over the
ranks. The figure is the median over repetitions of the time per epoch after start-up: ours is the kernel's wall
time of a whole run of E epochs on a learner whose workers run already (so the per-run costs, sending the weights
and getting them back, are in it), divided by E; the hand-written loop's is its rank 0's time for the E epochs,
divided by E. Start-up (starting the workers and joining the group, our first run) is reported apart, and so is the
whole time of a one-epoch fit on the digits: a learner's first run, its later runs, and one process.
Target: <= 1.10x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import overhead  # noqa: E402  (make_data, make_model, adamw: the same as the one-process benchmark)

from lrwidget import Learner  # noqa: E402

N_PROC = 2
TARGET = 1.10


def _hand_worker(rank: int, world: int, port: int, a: argparse.Namespace, out: dict) -> None:
    """One rank of the hand-written DDP loop; rank 0 reports its seconds for the epochs."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import DataLoader, DistributedSampler

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    dls = overhead.make_data(a.samples, a.bs, a.samples // 8)
    train_set, valid_set = dls.train.dataset, dls.valid.dataset
    sampler = DistributedSampler(train_set, world, rank, shuffle=True, seed=1)
    train = DataLoader(train_set, batch_size=a.bs, sampler=sampler)
    valid = DataLoader(valid_set, batch_size=a.bs, sampler=list(range(rank, len(valid_set), world)))
    model = DDP(overhead.make_model())
    opt = overhead.adamw(model.module)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=overhead.LR_MAX, total_steps=a.epochs * len(train), pct_start=0.25, div_factor=25.0,
        final_div_factor=1e5 / 25.0, base_momentum=0.85, max_momentum=0.95,
    )  # fmt: skip
    loss_fn = nn.CrossEntropyLoss()
    dist.barrier()
    t = time.perf_counter()
    for epoch in range(a.epochs):
        sampler.set_epoch(epoch)
        model.train()
        losses = []
        for x, y in train:
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            losses.append(loss.detach())
        model.module.eval()
        sums = torch.zeros(3)
        with torch.no_grad():
            for x, y in valid:
                o = model.module(x)
                sums += torch.stack([loss_fn(o, y) * len(y), (o.argmax(1) == y).sum().float(), torch.tensor(len(y))])
        dist.all_reduce(sums)
        torch.stack(losses).tolist()
    if rank == 0:
        out["seconds"] = time.perf_counter() - t
    dist.destroy_process_group()


def hand_epoch_seconds(a: argparse.Namespace) -> float:
    """Seconds per epoch of the hand-written DDP loop, start-up not counted."""
    with mp.Manager() as m:
        out = m.dict()
        mp.spawn(_hand_worker, args=(N_PROC, overhead_port(), a, out), nprocs=N_PROC, join=True)
        return out["seconds"] / a.epochs


def overhead_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ours(a: argparse.Namespace, learn: Learner) -> float:
    """Seconds per epoch of lrwidget's fit_one_cycle in the learner's running workers."""
    t = time.perf_counter()
    learn.fit_one_cycle(a.epochs, overhead.LR_MAX)
    return (time.perf_counter() - t) / a.epochs


def startups(reps: int) -> dict:
    """Seconds of a whole one-epoch fit on the shipped digits (1,437 samples): a learner's first run in 2 processes
    (starting the workers, importing torch, joining the group, sending the data), a later run, and one process;
    medians."""
    from lrwidget.data import digits

    def model() -> nn.Module:
        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def timed(learn: Learner) -> float:
        t = time.perf_counter()
        learn.fit(1, 1e-3)
        return time.perf_counter() - t

    first, later, one = [], [], []
    for _ in range(reps):
        learn = Learner(digits(bs=32), model(), num_processes=N_PROC, device="cpu")
        try:
            first.append(timed(learn))
            later.append(timed(learn))
        finally:
            learn.close()
        one.append(timed(Learner(digits(bs=64), model(), device="cpu")))
    return {k: statistics.median(v) for k, v in (("first_s", first), ("later_s", later), ("one_s", one))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=32768)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that it runs")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = p.parse_args(argv)
    if a.quick:
        a.samples, a.epochs, a.reps = 2048, 1, 1
    if a.device == "cuda":
        return on_gpus(a)
    torch.set_num_threads(1)
    dls = overhead.make_data(a.samples, a.bs, a.samples // 8)
    learn = Learner(dls, overhead.make_model(), num_processes=N_PROC, device="cpu")
    t = time.perf_counter()
    learn.fit(1, 1e-9)  # the first run: the workers start, the data goes to them once
    startup = time.perf_counter() - t
    ratios, t_ours, t_hand = [], [], []
    runs = startups(1 if a.quick else 3)
    try:
        for r in range(a.reps):
            pair = [("ours", lambda: ours(a, learn)), ("hand", lambda: hand_epoch_seconds(a))]
            if r % 2:
                pair.reverse()
            got = {k: f() for k, f in pair}
            t_ours.append(got["ours"])
            t_hand.append(got["hand"])
            ratios.append(got["ours"] / got["hand"])
    finally:
        learn.close()
    res = {
        "ratio": statistics.median(ratios),
        "ours_s": statistics.median(t_ours),
        "hand_s": statistics.median(t_hand),
        "startup_s": startup,
        **{f"digits_{k}": v for k, v in runs.items()},
        "reps": a.reps,
        "target": TARGET,
    }
    verdict = "met" if res["ratio"] <= TARGET else "MISSED"
    print(
        f"torch {torch.__version__}, CPU, {N_PROC} gloo processes of 1 thread ({os.cpu_count()} cores); MLP 784-64-10, "
        f"{a.samples} samples, batch {a.bs} per process, {a.epochs} epoch(s)\n"
        f"per epoch: lrwidget {res['ours_s']:.3f} s vs hand-written DDP {res['hand_s']:.3f} s: median ratio "
        f"{res['ratio']:.3f}x (min {min(ratios):.3f}, max {max(ratios):.3f}; {a.reps} reps); target <= {TARGET:.2f}x: "
        f"{verdict}\nstart-up (lrwidget's first run: start the workers, import, join the group, send the data): "
        f"{startup:.2f} s\n"
        f"a one-epoch fit on the digits (median of {1 if a.quick else 3}): a learner's first run "
        f"{runs['first_s']:.2f} s, later runs {runs['later_s']:.3f} s; one process {runs['one_s']:.3f} s",
        flush=True,
    )
    return res


def on_gpus(a: argparse.Namespace) -> dict:
    """num_processes = every visible GPU (NCCL; world size 1 on a one-GPU machine): start-up, time per epoch, and
    the validation accuracy against one process on the same data (random labels: both near 0.1, not a quality test)."""
    n = torch.cuda.device_count()
    if n == 0:
        raise SystemExit("--device cuda: no CUDA GPU is visible")
    dls = overhead.make_data(a.samples, a.bs, a.samples // 8)
    learn = Learner(dls, overhead.make_model(), num_processes=n, device="cuda")
    t = time.perf_counter()
    learn.fit(1, 1e-9)
    startup = time.perf_counter() - t
    try:
        per_epoch = statistics.median(ours(a, learn) for _ in range(a.reps))
        values = learn.recorder.values[-1]
    finally:
        learn.close()
    print(
        f"torch {torch.__version__}, {n} x {torch.cuda.get_device_name()}, NCCL; MLP 784-64-10, {a.samples} samples, "
        f"batch {a.bs} per process\nper epoch {per_epoch:.3f} s (median of {a.reps} runs of {a.epochs} epochs); "
        f"start-up {startup:.2f} s; last epoch {values}",
        flush=True,
    )
    return {"processes": n, "per_epoch_s": per_epoch, "startup_s": startup, "values": values}


if __name__ == "__main__":
    main()
