"""A worker process: started by the kernel as a fresh Python that runs `main()`, never the user's main module.

The kernel starts `python -c BOOT ...` (see pool.py): the worker gets the kernel's sys.path, joins the process
group, then runs the jobs it is sent until told to close. A task arrives by value, so nothing of the script or
notebook that made it is imported again, and a script's top-level code runs once, in the kernel.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import traceback
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

# run by `python -c`: the kernel's sys.path first, so that this process imports what the kernel imported
BOOT = "import sys, json; sys.path[:] = json.loads(sys.argv[1]); from lrwidget.parallel.worker import main; main()"


def main(argv: list[str] | None = None) -> None:
    """The worker's life: join the group, then run jobs until Close (or the kernel's end)."""
    # Ctrl-C in a terminal reaches every process of its group: the kernel turns it into a Stop the ranks agree on
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = json.loads((argv or sys.argv)[2])
    inbox, outbox = Connection(args["inbox"], writable=False), Connection(args["outbox"], readable=False)
    import torch
    import torch.distributed as dist

    from . import pickling
    from .messages import Close, Failed, Finished, Job, Ready
    from .rank import Member

    rank, world, backend = args["rank"], args["world"], args["backend"]
    if backend == "gloo":
        torch.set_num_threads(1)  # N processes on the machine's cores: one thread each
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{args['port']}", rank=rank, world_size=world)
    device = torch.device("cuda", rank % torch.cuda.device_count()) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    send = partial(pickling.send, outbox)
    send(Ready(rank))
    held: dict[int, Any] = {}  # what the kernel asked this worker to keep between jobs (a learner's data)
    try:
        while True:
            try:
                msg = pickling.receive(inbox)
            except (EOFError, OSError):  # the kernel has gone
                break
            if isinstance(msg, Close):
                break
            if not isinstance(msg, Job):  # a Stop for a job that ended already
                continue
            me = Member(rank, world, device, msg.number, inbox, send)
            try:
                if msg.keep is not None:
                    held = pickling.loads(msg.keep)
                result = pickling.loads(msg.task, held)(me)
                send(Finished(rank, msg.number, result if rank == 0 else None))
            except BaseException as e:
                tb = traceback.format_exc()
                send(Failed(rank, msg.number, pickling.error_bytes(e), type(e).__name__, str(e), tb))
                break  # the other ranks wait in a collective that will never complete: the kernel ends them all
            if me.closing:
                break
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
