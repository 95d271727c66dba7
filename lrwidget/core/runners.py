"""How a learner's runs go, chosen once where `num_processes` is set: here, or in N worker processes with DDP.

In N processes the kernel's Learner stays the one the user holds. Each run sends the workers the learner's class and
public state (rank_task.py) by value; every rank runs the call over its shard, rank 0 tells the kernel what happens,
and the run returns once every rank has finished its part; a run that changes the state loads rank 0's weights and
optimizer state into the kernel's learner in place.
"""

from __future__ import annotations

import pickle
import time
import weakref
from pathlib import Path
from typing import Any

from ..parallel.messages import Failed, Finished, Gone, Report
from ..parallel.pool import Pool
from ..state import disk
from ..state.copies import load_opt_in_place
from .checks import loaders_for_processes
from .errors import RemoteTraceback, add_note
from .events import RunInfo, emit
from .guard import StopSignal
from .rank_task import Batches, Call, Ended, EpochEnded, Outcome, RankTask, Started, shuffle_seed

__all__ = ["Call", "Here", "InProcesses", "runner_for"]

START_TIMEOUT = 300.0  # seconds new workers get to import torch and join the group, before the run is given up


class Here:
    """Runs in this process."""

    def run(self, learn: Any, sig: StopSignal, call: Call) -> Any:
        """`call.body(learn, sig, *call.args)`."""
        return call.body(learn, sig, *call.args)

    def pids(self) -> list[int]:
        """No worker processes."""
        return []

    def close(self) -> None:
        """Nothing to end."""


class Workers:
    """What an InProcesses holds between runs, apart from it so that its finalizer can end them: the workers, and
    the folder the ranks' copies on disk go in (a rank killed leaves no files)."""

    def __init__(self) -> None:
        self.pool: Pool | None = None
        self.scratch: Path | None = None

    def end(self) -> None:
        """End the workers (none is left) and delete the ranks' folder (again: nothing)."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()
        self.scratch = disk.ranks_folder(self.scratch, "memory", None)


class InProcesses:
    """Runs in N worker processes (one GPU each on CUDA, the CPU's cores with gloo), kept between runs."""

    def __init__(self, n: int):
        self.n = n
        self.workers = Workers()
        weakref.finalize(self, self.workers.end)  # the learner's deletion (its runner's, the exit) ends them too

    def pids(self) -> list[int]:
        """The workers' process ids (none before the first run)."""
        return self.workers.pool.pids() if self.workers.pool is not None else []

    def close(self) -> None:
        """End the workers (none is left) and delete the ranks' folder; the next run starts new ones."""
        self.workers.end()

    def _pool_for(self, device: Any) -> Pool:
        backend = "nccl" if device.type == "cuda" else "gloo"
        pool = self.workers.pool
        if pool is not None and (not pool.alive or pool.backend != backend):
            self.close()  # an error ended the last one, or the learner moved to another device
        if self.workers.pool is None:
            self.workers.pool = Pool(self.n, backend)
        return self.workers.pool

    def run(self, learn: Any, sig: StopSignal, call: Call) -> Any:
        """Run `call` in every worker; the kernel's learner gets rank 0's events as they come, then what it did."""
        loaders_for_processes(learn.dls)  # `learn.dls` may have been replaced since the learner was made
        pool = self._pool_for(learn.device)
        self.workers.scratch = disk.ranks_folder(self.workers.scratch, learn.snapshot, learn.snapshot_dir)
        state = {**learn.__getstate__(), "snapshot_dir": self.workers.scratch}  # the ranks write their copies there
        task = RankTask(type(learn), state, call, shuffle_seed(consume=call.changes_state))
        number = pool.submit(task, keep=(learn.dls.train, learn.dls.valid), what="the learner")  # data: sent once
        replay, finished = Replay(learn), {}
        deadline, asked = time.monotonic() + START_TIMEOUT, False
        try:
            while len(finished) < pool.n:
                if sig.is_set() and not asked:
                    pool.request_stop(sig.reason)
                    asked = True
                msg = pool.receive(0.05)
                if msg is None:
                    if pool.ready < pool.n and time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{pool.n - pool.ready} of the {pool.n} worker processes did not join the group within "
                            f"{START_TIMEOUT:.0f} s (a port blocked, a GPU busy?): nothing was run"
                        )
                    if not pool.alive:  # no EOF yet where a process it forked (a loader's worker) holds its pipe
                        raise RuntimeError(f"a worker process ended without a word ({pool.exit_codes()})")
                    continue
                if isinstance(msg, Gone):
                    raise RuntimeError(f"a worker process ended without a word ({pool.exit_codes()})")
                if isinstance(msg, Failed):
                    raise _rebuilt(msg, pool)
                if msg.number != number:
                    continue
                if isinstance(msg, Report):
                    replay.take(msg.payload)
                elif isinstance(msg, Finished):
                    finished[msg.rank] = msg.result
        except BaseException as e:
            # an error in a rank (the others wait in a collective that will never complete), a worker gone, a second
            # Ctrl-C, an observer's error here: the workers are ended, none is left; the next run starts new ones
            self.close()
            replay.end("interrupted" if isinstance(e, KeyboardInterrupt) else "error", e)
            raise
        out: Outcome = finished[0]
        if out.model is not None:
            learn.model.load_state_dict(out.model)
            load_opt_in_place(learn.opt, out.opt)
        replay.end(out.end_reason, None)
        return out.result


def _rebuilt(msg: Failed, pool: Pool) -> BaseException:
    """The error a rank raised, as its own class where it can be rebuilt, with notes naming the rank."""
    error = pickle.loads(msg.error) if msg.error is not None else RuntimeError(f"{msg.kind}: {msg.message}")
    add_note(error, f"raised in worker rank {msg.rank} of {pool.n} (its traceback: the cause above)")
    if not pool.alive:  # the cause: a worker that died (killed for memory?) broke the others' collective
        add_note(error, f"worker processes that had ended: {pool.exit_codes()}")
    error.__cause__, error.__suppress_context__ = RemoteTraceback(msg.traceback), True
    return error


class Replay:
    """Rank 0's events, put into the kernel's recorder and told to its observers as if the loop ran here."""

    def __init__(self, learn: Any):
        self.learn, self.started = learn, False

    def take(self, event: Any) -> None:
        """One event of rank 0."""
        learn, rec = self.learn, self.learn.recorder
        if isinstance(event, Started):
            rec.reset(event.metric_names)
            learn.run = RunInfo(event.kind, event.n_epoch, event.n_iter, event.total, copy_on_disk=event.copy_on_disk)
            learn.run.lr_max, learn.run.probe = event.lr_max, event.probe
            self.started = True
            emit(learn.observers, "fit_start", learn)
        elif isinstance(event, Batches):
            learn.run.epoch = event.epoch
            rec.add_read(event.losses, event.lrs, event.moms)
            emit(learn.observers, "batch_end", learn)
        elif isinstance(event, EpochEnded):
            rec.add_epoch(event.values, event.seconds)
            emit(learn.observers, "epoch_end", learn)
        elif isinstance(event, Ended):
            self.end(event.end_reason, None)

    def end(self, reason: str, error: BaseException | None) -> None:
        """The run's end, told once (nothing if it never began)."""
        if not self.started:
            return
        self.started = False
        self.learn.run.end_reason = reason
        self.learn.recorder.flush()
        emit(self.learn.observers, "fit_end", self.learn, error)


def runner_for(n: int) -> Here | InProcesses:
    """The runner of a learner training in `n` processes."""
    return Here() if n == 1 else InProcesses(n)
