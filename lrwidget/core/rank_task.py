"""A run's part in one worker process: the learner rebuilt as its own class over this rank's shard of the data, its
model in DistributedDataParallel, rank 0 telling the kernel what happens in typed events."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..state.copies import clone_cpu
from .data import DataLoaders
from .events import Observer

SEND_EVERY = 0.1  # seconds between rank 0's reports of its batches


@dataclass(frozen=True)
class Call:
    """One run's work: `body(learn, sig, *args)`, a function of the learner's own class (a subclass's override
    included); `changes_state` False: the learner ends as it began (lr_find), so nothing comes back but the result."""

    kind: str
    body: Callable
    args: tuple
    changes_state: bool = True


# -- what rank 0 tells the kernel (replayed there into the kernel learner's recorder and observers) ---------


@dataclass(frozen=True)
class Started:
    kind: str
    n_epoch: int
    n_iter: int
    total: int
    metric_names: list[str]
    copy_on_disk: str  # where rank 0's copy of the state is, when on disk
    lr_max: float | None = None
    probe: tuple[int, int, str] | None = None


@dataclass(frozen=True)
class Batches:
    epoch: int
    lrs: list[float]
    moms: list[float]
    losses: list[float]


@dataclass(frozen=True)
class EpochEnded:
    values: list[float]
    seconds: float


@dataclass(frozen=True)
class Ended:
    """One loop's end (a body may run several: fine_tune's two phases, lr_search's probes)."""

    end_reason: str


@dataclass
class Outcome:
    """What a rank's part gives back: how it ended, the body's result, and (rank 0, a run that changes the state)
    the weights and optimizer state to load in the kernel."""

    end_reason: str
    result: Any
    model: dict | None = None
    opt: dict | None = None


@dataclass
class RankTask:
    """Sent to every worker: the learner's class and public state, the call, and the training data's shuffle seed."""

    cls: type
    state: dict
    call: Call
    seed: int

    def __call__(self, rank: Any) -> Outcome:
        """Run the call as this rank's part; rank 0 reports to the kernel."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        learn = self.cls.__new__(self.cls)
        learn.__setstate__({**self.state, "device": rank.device})
        learn.num_processes = 1  # its runs go here: this process is one of the N
        learn.dls = sharded(learn.dls, rank.rank, rank.world, self.seed)
        module = learn.model
        learn.model = DDP(module, device_ids=[rank.device.index] if rank.device.type == "cuda" else None)
        learn.rank = rank
        if rank.rank == 0:
            learn.observers.append(Reporter(rank))
        with learn.guard(self.call.kind) as sig:  # never set here: the kernel's Stop comes through rank.agreed_stop
            result = self.call.body(learn, sig, *self.call.args)
        out = Outcome(learn.run.end_reason if learn.run else "", result)
        if self.call.changes_state and rank.rank == 0:
            out.model, out.opt = clone_cpu(module.state_dict()), clone_cpu(learn.opt.state_dict())
        return out


def sharded(dls: DataLoaders, rank: int, world: int, seed: int) -> DataLoaders:
    """Each rank's part of the data: the training set shuffled from `seed`, every rank the same number of batches;
    the validation set split without repeats (its metrics are summed over the ranks)."""
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    def loader(dl: Any, train: bool) -> DataLoader:
        if train:
            shuffle = isinstance(dl.sampler, RandomSampler)
            sampler = DistributedSampler(dl.dataset, world, rank, shuffle=shuffle, seed=seed, drop_last=False)
        else:
            sampler = list(range(rank, len(dl.dataset), world))
        return DataLoader(
            dl.dataset, batch_size=dl.batch_size, sampler=sampler, num_workers=dl.num_workers,
            collate_fn=dl.collate_fn, pin_memory=dl.pin_memory, drop_last=dl.drop_last if train else False,
        )  # fmt: skip

    return DataLoaders(loader(dls.train, True), None if dls.valid is None else loader(dls.valid, False))


class Reporter(Observer):
    """On rank 0: the batches (at most every SEND_EVERY seconds) and epoch rows, told to the kernel."""

    def __init__(self, rank: Any):
        self.rank, self.sent, self.next = rank, 0, 0.0

    def fit_start(self, learn: Any) -> None:
        r = learn.run
        self.sent, self.next = 0, time.monotonic() + SEND_EVERY
        names = list(learn.recorder.metric_names)
        self.rank.report(Started(r.kind, r.n_epoch, r.n_iter, r.total, names, r.copy_on_disk, r.lr_max, r.probe))

    def batch_end(self, learn: Any) -> None:
        if time.monotonic() >= self.next:
            self.send(learn)

    def epoch_end(self, learn: Any) -> None:
        self.send(learn)
        rec = learn.recorder
        self.rank.report(EpochEnded(list(rec.values[-1]), rec.times[-1]))

    def fit_end(self, learn: Any, error: BaseException | None) -> None:
        self.send(learn)
        if error is None:  # an error ends the whole run: the kernel says so when the rank's Failed comes
            self.rank.report(Ended(learn.run.end_reason))

    def send(self, learn: Any) -> None:
        rec = learn.recorder
        raw = rec.raw_losses  # reads the losses back from the device: a few times a second at most
        k, self.sent = self.sent, len(raw)
        if self.sent > k:
            self.rank.report(
                Batches(learn.run.epoch, rec.lrs[k : self.sent], rec.moms[k : self.sent], raw[k:].tolist())
            )
        self.next = time.monotonic() + SEND_EVERY


def shuffle_seed(consume: bool) -> int:
    """The seed of the workers' shuffle, drawn from this process's torch generator: part of its random state (a
    reset gives the same again), and left as it was for a run that changes nothing (`consume` False)."""
    if consume:
        return int(torch.randint(2**31 - 1, ()).item())
    with torch.random.fork_rng(devices=[]):
        return int(torch.randint(2**31 - 1, ()).item())
