"""What crosses to the worker processes, by value: cloudpickle where installed (classes, functions and lambdas of a
notebook cell or a script's main module travel too), else pickle; objects the workers already hold go by name."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable
from typing import Any

NO_CLOUDPICKLE = "; pip install cloudpickle (lrwidget[ddp]) to send classes, functions and lambdas of notebook cells"


def _pickler_class() -> type:
    try:
        from cloudpickle import CloudPickler
    except ImportError:
        return pickle.Pickler
    return CloudPickler


def dumps(obj: Any, held: dict[int, Any] | None = None, what: str = "the job") -> bytes:
    """`obj` as bytes; an object of `held` ({id: object}, which the workers keep) is written as its id only; `what`
    names `obj` in the error when it cannot be written."""
    held = held or {}
    cls = _pickler_class()

    class Pickler(cls):
        def persistent_id(self, o: Any) -> int | None:
            return id(o) if id(o) in held and held[id(o)] is o else None

    buf = io.BytesIO()
    try:
        Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        hint = NO_CLOUDPICKLE if cls is pickle.Pickler else ""
        raise TypeError(f"{what} cannot be sent to its worker processes ({type(e).__name__}: {e}){hint}") from e
    return buf.getvalue()


def loads(data: bytes, held: dict[int, Any] | None = None) -> Any:
    """What `dumps` wrote, with the ids of held objects replaced by the objects this worker keeps."""
    held = held or {}

    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return held[pid]

    return Unpickler(io.BytesIO(data)).load()


def with_held(objects: Iterable[Any]) -> dict[int, Any]:
    """{id: object} for the objects a job asks the workers to keep (None left out)."""
    return {id(o): o for o in objects if o is not None}


def error_bytes(e: BaseException) -> bytes | None:
    """The error pickled so that the kernel rebuilds it as the same class (a notebook cell's too, by value), or None
    where it cannot be rebuilt (an exception whose __init__ wants other arguments)."""
    try:
        data = dumps(e)
        pickle.loads(data)  # read back here first: what fails here would fail in the kernel
    except Exception:
        return None
    return data


def send(conn: Any, msg: Any) -> None:
    """Send a message through a pipe, plainly pickled (tensors by value: the processes share no memory or keys)."""
    conn.send_bytes(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))


def receive(conn: Any) -> Any:
    """The next message of a pipe (EOFError when its other end closed)."""
    return pickle.loads(conn.recv_bytes())
