"""Runs in N processes: a pool of spawned workers kept between runs, DDP in each, the events streamed to the kernel.

The kernel's Learner stays the one the user holds. For each run it sends the workers itself by value (cloudpickle:
model classes, Datasets, lambdas defined in notebook cells travel too), each worker builds a one-process Learner over
its shard with the model in DistributedDataParallel and runs the one training loop; rank 0 streams the batches and
epoch rows back, and at the end the weights and optimizer state, which the kernel's learner loads in place.
Workers are spawned afresh (never forked), so a kernel that has already used CUDA can start them.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
import socket
import time
import traceback
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..parallel.pool import Inbox, Outbox, Pool
from ..state import snapshot as snapshots
from ..state.copies import clone_cpu, load_opt_in_place
from .events import RunInfo, emit

# as given (and whether the loss is lrwidget's choice, which gets the logits of a Hugging Face output)
SENT = ("loss_func", "_default_loss", "metrics", "splitter", "mixed_precision", "lr", "moms", "wd_bn_bias", "train_bn")
SENT += ("accum_steps", "snapshot")  # a rank's lr_find copy goes where the learner's would, in Pool.scratch
STOP_EVERY = 8  # batches between the ranks' agreements on a Stop: one tiny all-reduce, never a sync per batch
SEND_EVERY = 0.1  # seconds between rank 0's reports of its batches
STOPS = {0: "", 1: "stopped", 2: "interrupted"}
START_TIMEOUT = 300.0  # seconds new workers get to import torch and join the group, before the run is given up
NO_CLOUDPICKLE = "; pip install cloudpickle (lrwidget[ddp]) to send classes, functions and lambdas of notebook cells"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RemoteTraceback(Exception):
    """The traceback of an error in a worker process, as text: the cause of that error, raised again here."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f"\n{self.tb}"


@dataclass
class Rank:
    """What a worker's Learner knows of the group it trains in."""

    rank: int
    world: int
    stop: Any  # a shared int: 0 go on, 1 stopped, 2 interrupted (set by the kernel)
    events: Outbox  # the pipe back to the kernel


class Workers(Pool):
    """The N workers of a learner, in one torch.distributed group (gloo on CPU, NCCL on CUDA), kept between runs."""

    def __init__(self, n: int, device: torch.device):
        backend = "nccl" if device.type == "cuda" else "gloo"
        super().__init__(n, _worker_main, (n, _free_port(), backend))
        self.device = device
        self.sent_dls: tuple = ()  # the loaders the workers hold (sent once, not with every run)
        self.ready = 0  # workers that have joined the group
        self.scratch: Path | None = None  # the ranks' copies on disk go in here: a rank killed leaves no files

    def close(self, timeout: float = 5.0) -> None:
        """End every worker (none is left) and delete the ranks' folder."""
        super().close(timeout)
        self.scratch = snapshots.ranks_folder(self.scratch, "memory", None)


def pool_for(learn: Any) -> Workers:
    """The learner's pool, spawned at its first run (again after an error ended the last one, or for another
    num_processes or device)."""
    pool = getattr(learn, "_pool", None)
    if pool is None or not pool.alive or (pool.n, pool.device) != (learn.num_processes, learn.device):
        if pool is not None:
            pool.close()
        pool = learn._pool = Workers(learn.num_processes, learn.device)
        weakref.finalize(learn, pool.close)  # the learner's deletion ends its workers (a finalizer keeps itself)
    return pool


def check_loaders(dls: Any) -> None:
    """TypeError unless the data are torch DataLoaders, which the workers can shard."""
    for name, dl in (("training", dls.train), ("validation", dls.valid)):
        if dl is not None and not isinstance(dl, torch.utils.data.DataLoader):
            raise TypeError(
                f"num_processes > 1 shards the data with a DistributedSampler, so the {name} data must be a "
                f"torch.utils.data.DataLoader over a Dataset, got {type(dl).__name__}"
            )


def _dumps() -> Any:
    """cloudpickle's dumps (what a notebook cell defined goes by value), else pickle's (what is importable by name)."""
    try:
        from cloudpickle import dumps
    except ImportError:
        return pickle.dumps
    return dumps


def job_for(learn: Any, pool: Workers, method: str, args: tuple) -> bytes:
    """The learner as the workers rebuild it, and the call to make: by value, with cloudpickle."""
    dumps = _dumps()
    from .data import DataLoaders

    pool.scratch = snapshots.ranks_folder(pool.scratch, learn.snapshot, learn.snapshot_dir)
    model = learn.model if learn.device.type == "cpu" else copy.deepcopy(learn.model).cpu()
    spec = {
        "model": model,
        "opt": clone_cpu(learn.opt.state_dict()),
        "opt_func": None if learn._default_opt else learn.opt_func,
        # the data travels with the first run, and again only when the learner's loaders are others
        "dls": None if pool.sent_dls == (learn.dls.train, learn.dls.valid) else DataLoaders(*learn.dls),
        "seed": learn._seeds,
        "snapshot_dir": pool.scratch,
        **{k: getattr(learn, k) for k in SENT},
    }
    try:
        return dumps({"spec": spec, "method": method, "args": args})
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        hint = NO_CLOUDPICKLE if dumps is pickle.dumps else ""
        raise TypeError(f"the learner cannot be sent to its worker processes ({type(e).__name__}: {e}){hint}") from e


def run(learn: Any, method: str, args: tuple, sig: Any) -> Any:
    """Run `learn.method(*args)` in the learner's N processes (its arguments checked already); the kernel's learner
    gets what it did."""
    check_loaders(learn.dls)  # `learn.dls` may have been replaced since the learner was made
    pool = pool_for(learn)
    learn._seeds += 1  # each run its own shuffle
    try:
        blob = job_for(learn, pool, method, args)
    except BaseException:  # refused before anything ran: the learner's random state is as it was
        learn._seeds -= 1
        raise
    replay = _Replay(learn)
    deadline = time.monotonic() + START_TIMEOUT
    pool.stop.value = 0
    sent = False
    try:
        while True:
            if not sent and pool.ready == pool.n:  # each worker reads its pipe now: the send cannot hang
                pool.send(blob)
                pool.sent_dls, sent = (learn.dls.train, learn.dls.valid), True
            if sig.is_set() and pool.stop.value == 0:
                pool.stop.value = 2 if sig.reason == "interrupted" else 1
            msg = pool.receive(0.05)
            if msg is None:
                if pool.ready < pool.n and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{pool.n - pool.ready} of the {pool.n} worker processes did not join the group within "
                        f"{START_TIMEOUT:.0f} s (a port blocked, a GPU busy?): nothing was run"
                    ) from None
                if not pool.alive:  # no EOF yet where a process it forked (a loader's worker) holds its pipe
                    raise RuntimeError(f"a worker process ended without a word ({pool.exit_codes()})")
                continue
            if msg[0] == "pickled":  # an error, pickled by the worker
                msg = pickle.loads(msg[1])
            kind = msg[0]
            if kind == "ready":
                pool.ready += 1
                continue
            if kind == "error":
                _, rank, error, tb = msg
                gone = any(not p.is_alive() for p in pool.procs)
                with contextlib.suppress(Exception):
                    error.add_note(f"raised in worker rank {rank} of {pool.n} (its traceback: the cause above)")
                    if gone:  # the cause: a worker that died (killed for memory?) broke the others' collective
                        error.add_note(f"worker processes that had ended: {pool.exit_codes()}")
                raise error from RemoteTraceback(tb)
            if kind == "done":
                out = msg[1]
                replay.end(out["end_reason"], None)
                if out.get("model") is not None:
                    learn.model.load_state_dict(out["model"])
                    load_opt_in_place(learn.opt, out["opt"])
                return out.get("result")
            replay.take(msg)
    except BaseException as e:
        # an error in a rank (the others wait in a collective that will never complete), a worker gone, a second
        # Ctrl-C, an observer's error here: the workers are ended, none is left; the next run starts new ones
        pool.close(timeout=0.5)
        if learn._pool is pool:
            learn._pool = None
        replay.end("interrupted" if isinstance(e, KeyboardInterrupt) else "error", e)
        raise


class _Replay:
    """Rank 0's reports, put into the kernel's recorder and told to its observers as if the loop ran here."""

    def __init__(self, learn: Any):
        self.learn, self.started = learn, False

    def take(self, msg: tuple) -> None:
        learn, rec = self.learn, self.learn.recorder
        kind = msg[0]
        if kind == "start":
            _, run_kind, n_epoch, n_iter, total, names, snapshot = msg
            rec.reset(names)
            learn.run = RunInfo(run_kind, n_epoch, n_iter, total, snapshot=snapshot)
            self.started = True
            emit(learn.observers, "fit_start", learn)
        elif kind == "batches":
            _, epoch, lrs, moms, raw = msg
            learn.run.epoch = epoch
            rec.add_read(raw, lrs, moms)
            emit(learn.observers, "batch_end", learn)
        elif kind == "epoch":
            _, values, seconds = msg
            rec.add_epoch(values, seconds)
            emit(learn.observers, "epoch_end", learn)

    def end(self, reason: str, error: BaseException | None) -> None:
        if not self.started:  # never began, or ended already
            return
        self.started = False
        self.learn.run.end_reason = reason
        self.learn.recorder.flush()
        emit(self.learn.observers, "fit_end", self.learn, error)


class _Reporter:
    """On rank 0: sends the batches (at most every SEND_EVERY seconds) and epoch rows to the kernel."""

    def __init__(self, events: Any):
        self.events, self.sent, self.next = events, 0, 0.0

    def fit_start(self, learn: Any) -> None:
        r = learn.run
        self.sent, self.next = 0, time.monotonic() + SEND_EVERY
        names = list(learn.recorder.metric_names)
        self.events.put(("start", r.kind, r.n_epoch, r.n_iter, r.total, names, r.snapshot))  # rank 0's copy

    def batch_end(self, learn: Any) -> None:
        if time.monotonic() >= self.next:
            self.send(learn)

    def epoch_end(self, learn: Any) -> None:
        self.send(learn)
        rec = learn.recorder
        self.events.put(("epoch", rec.values[-1], rec.times[-1]))

    def fit_end(self, learn: Any, error: BaseException | None) -> None:
        self.send(learn)

    def send(self, learn: Any) -> None:
        rec = learn.recorder
        raw = rec.raw_losses  # reads the losses back from the device: a few times a second at most
        k, self.sent = self.sent, len(raw)
        if self.sent > k:
            self.events.put(
                ("batches", learn.run.epoch, rec.lrs[k : self.sent], rec.moms[k : self.sent], raw[k:].tolist())
            )
        self.next = time.monotonic() + SEND_EVERY


def _worker_main(rank: int, cmds: Inbox, events: Outbox, stop: Any, world: int, port: int, backend: str) -> None:
    """A worker: join the group, then run the jobs the kernel sends until it sends None."""
    import torch.distributed as dist

    if backend == "gloo":
        torch.set_num_threads(1)  # N processes on the machine's cores: one thread each
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    device = torch.device("cuda", rank % torch.cuda.device_count()) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    events.put(("ready", rank))
    held: dict[str, Any] = {}  # what the runs of this learner share: its data
    try:
        while True:
            blob = cmds.get()
            if blob is None:
                break
            try:
                out = _run_job(blob, Rank(rank, world, stop, events), device, held)
                if rank == 0:
                    events.put(("done", out))
            except BaseException as e:
                events.put(_error_message(rank, e, traceback.format_exc()))
                break
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _error_message(rank: int, e: BaseException, tb: str) -> tuple:
    """The error as the kernel reads it back: itself (a class of a notebook cell by value, which cloudpickle reads back
    in the kernel as the kernel's own class), else its type and message in a RuntimeError."""
    try:
        data = _dumps()(("error", rank, e, tb))
        pickle.loads(data)  # read back here first: an exception whose __init__ wants other arguments cannot be rebuilt
        return ("pickled", data)
    except Exception:
        return ("error", rank, RuntimeError(f"{type(e).__name__}: {e}"), tb)


def _run_job(blob: bytes, rk: Rank, device: torch.device, held: dict) -> dict:
    """Build the one-process Learner of this rank over its shard, DDP-wrapped, and make the call."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from .learner import Learner

    job = pickle.loads(blob)  # what cloudpickle wrote, pickle reads
    s = job["spec"]
    if s["dls"] is not None:
        held["dls"] = s["dls"]
    dls = _sharded(held["dls"], rk, s["seed"])
    learn = Learner(
        dls, s["model"], loss_func=s["loss_func"], opt_func=s["opt_func"], metrics=s["metrics"],
        splitter=s["splitter"], device=device, mixed_precision=s["mixed_precision"], lr=s["lr"], moms=s["moms"],
        wd_bn_bias=s["wd_bn_bias"], train_bn=s["train_bn"], accum_steps=s["accum_steps"], snapshot=s["snapshot"],
        snapshot_dir=s["snapshot_dir"],
    )  # fmt: skip
    learn._default_loss = s["_default_loss"]
    learn.opt.load_state_dict(s["opt"])
    module = learn.model
    learn.model = DDP(module, device_ids=[device.index] if device.type == "cuda" else None)
    learn._rank = rk
    if rk.rank == 0:
        learn.observers.append(_Reporter(rk.events))
    result = getattr(learn, job["method"])(*job["args"])
    out: dict[str, Any] = {"end_reason": learn.run.end_reason if learn.run else "", "result": result}
    if job["method"] != "lr_find":  # lr_find leaves the kernel's learner as it was: nothing comes back
        out["model"] = clone_cpu(module.state_dict())
        out["opt"] = clone_cpu(learn.opt.state_dict())
    return out


def _sharded(dls: Any, rk: Rank, seed: int) -> Any:
    """Each rank's part of the data: the training set shuffled from `seed`, every rank the same number of batches;
    the validation set split without repeats (its metrics are summed over the ranks)."""
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    from .data import DataLoaders

    def loader(dl: Any, train: bool) -> DataLoader:
        if train:
            sampler = DistributedSampler(
                dl.dataset, rk.world, rk.rank, shuffle=isinstance(dl.sampler, RandomSampler), seed=seed, drop_last=False
            )
        else:
            sampler = list(range(rk.rank, len(dl.dataset), rk.world))
        return DataLoader(
            dl.dataset, batch_size=dl.batch_size, sampler=sampler, num_workers=dl.num_workers,
            collate_fn=dl.collate_fn, pin_memory=dl.pin_memory, drop_last=dl.drop_last if train else False,
        )  # fmt: skip

    return DataLoaders(loader(dls.train, True), None if dls.valid is None else loader(dls.valid, False))


def agreed_stop(rk: Rank, device: torch.device) -> str:
    """Every rank's answer to "stop now?", the same on all of them (the kernel's request, read by each)."""
    import torch.distributed as dist

    t = torch.tensor([rk.stop.value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return STOPS.get(int(t.item()), "stopped")


def all_mean(t: torch.Tensor, rk: Rank) -> torch.Tensor:
    """The mean of `t` over the ranks."""
    import torch.distributed as dist

    t = t.detach().clone()
    dist.all_reduce(t)
    return t / rk.world


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over the ranks."""
    import torch.distributed as dist

    dist.all_reduce(t)
    return t
