"""An exact copy of what a run changes (weights, optimizer, module modes, grads, every random state), kept in host
memory (or, through snapshot.py, in files) and put back in place: lr_find leaves the learner as it found it."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class InFile:
    """A tensor of a copy on disk: the files of its pieces in the copy's folder, its shape and dtype."""

    names: tuple[str, ...]
    shape: torch.Size
    dtype: torch.dtype


LEAVES = (torch.Tensor, InFile)


class Source(Protocol):
    """Where a copy's tensors are read back from (snapshot.DiskCopy); a copy in memory holds them itself."""

    def read(self, leaf: Any, device: torch.device | str) -> torch.Tensor:
        """The tensor of `leaf`, new, on `device`."""
        ...

    def read_into(self, leaf: Any, dst: torch.Tensor) -> None:
        """Copy the tensor of `leaf` into `dst`."""
        ...


def tensor_key(t: torch.Tensor) -> tuple:
    """The same key for the same tensor reached twice (tied weights): it is counted and written once."""
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _to_cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


def clone_cpu(o: Any) -> Any:
    """A deep copy with every tensor copied to host memory."""
    return map_tensors(o, _to_cpu)


def copy_to(o: Any, device: torch.device) -> Any:
    """A deep copy with every tensor copied to `device`."""
    return map_tensors(o, lambda t: t.detach().to(device, copy=True))


def map_tensors(o: Any, f: Callable[[Any], Any]) -> Any:
    """A deep copy of nested dicts, lists and tuples with `f` of every tensor (or InFile) in it."""
    if isinstance(o, LEAVES):
        return f(o)
    if isinstance(o, dict):
        return {k: map_tensors(v, f) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return type(o)(map_tensors(v, f) for v in o)
    return copy.deepcopy(o)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def loader_generators(dl: Any) -> list[torch.Generator]:
    """The random generators a loader draws its shuffling from, where it has its own."""
    found = []
    for obj in (dl, getattr(dl, "sampler", None), getattr(getattr(dl, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found


def take(model: nn.Module, opt: Any, train_dl: Any, device: torch.device, keep: Callable | None = None) -> dict:
    """Model, optimizer (None: not made yet), module modes, grads and every random state, each tensor copied to host
    memory, or kept as `keep` keeps it (a copy on disk writes it to a file)."""
    keep = keep or _to_cpu
    return {
        "model": map_tensors(model.state_dict(), keep),
        "opt": None if opt is None else map_tensors(opt.state_dict(), keep),
        "modes": [(m, m.training) for m in model.modules()],
        "grads": [(p, None if p.grad is None else keep(p.grad)) for p in model.parameters()],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "mps": torch.mps.get_rng_state() if device.type == "mps" else None,
        "numpy": np.random.get_state(),
        "random": random.getstate(),
        "loader": [(g, g.get_state()) for g in loader_generators(train_dl)],
        # a loader's own random.Random: fastai's DataLoader shuffles with `dl.rng`, a new one each epoch seeded by it
        "loader_rng": train_dl.rng.getstate() if isinstance(getattr(train_dl, "rng", None), random.Random) else None,
        "workers": getattr(train_dl, "_iterator", None),
    }


def restore(s: dict, model: nn.Module, opt: Any, train_dl: Any, source: Source | None = None) -> None:
    """Put back what `take` saved, into the tensors the model and optimizer already hold; `s` stays as it was.
    `source`: where the tensors of a copy on disk are read from (None: `s` holds them)."""
    # `s` may be restored again (the widget's same start): nothing of it may end up shared with the live state
    if source is None:
        model.load_state_dict(s["model"])
    else:
        load_model_in_place(model, s["model"], source)
    if isinstance(opt, torch.optim.Optimizer):
        load_opt_in_place(opt, s["opt"], source)
    elif opt is not None:  # another optimizer with a state_dict (fastai's): its own load, from a copy
        dev = _device_of(model)
        opt.load_state_dict(copy_to(s["opt"], dev) if source is None else map_tensors(s["opt"], _reader(source, dev)))
    for m, training in s["modes"]:
        m.training = training
    for p, g in s["grads"]:
        p.grad = None if g is None else g.to(p.device, copy=True) if source is None else source.read(g, p.device)
    torch.set_rng_state(s["torch"])
    if s["cuda"] is not None:
        torch.cuda.set_rng_state_all(s["cuda"])
    if s["mps"] is not None:
        torch.mps.set_rng_state(s["mps"])
    np.random.set_state(s["numpy"])
    random.setstate(s["random"])
    for g, state in s["loader"]:
        g.set_state(state)
    if s["loader_rng"] is not None and isinstance(getattr(train_dl, "rng", None), random.Random):
        train_dl.rng.setstate(s["loader_rng"])
    # the run started the loader's persistent worker processes, whose random state has moved on: end them, so that
    # the next epoch starts them afresh from the restored generators, as it would have without the run (torch's
    # DataLoader has no public way to end its persistent workers: its _iterator and _shutdown_workers)
    if getattr(train_dl, "persistent_workers", False) and s["workers"] is None and train_dl._iterator is not None:
        it, train_dl._iterator = train_dl._iterator, None
        it._shutdown_workers()


def _reader(source: Source, device: torch.device | str) -> Callable[[Any], torch.Tensor]:
    return lambda leaf: source.read(leaf, device)


def load_model_in_place(model: nn.Module, saved: dict, source: Source) -> None:
    """Copy a state_dict kept by `source` into the model's own parameters and buffers, one tensor at a time."""
    live = model.state_dict()
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    if live.keys() == saved.keys() and all(
        isinstance(v, LEAVES)
        and isinstance(t, torch.Tensor)
        and (t.shape, t.dtype) == (v.shape, v.dtype)
        # a tensor that a state_dict hook made, not the module's own, would take the copy and forget it
        and t.untyped_storage().data_ptr() in own
        for t, v in ((live[k], saved[k]) for k in saved)
    ):
        with torch.no_grad():
            for k, v in saved.items():
                source.read_into(v, live[k])
    else:  # other keys, shapes, extra state: the model's own load (its hooks, its errors), of the whole copy
        model.load_state_dict(map_tensors(saved, _reader(source, "cpu")))


def load_opt_in_place(opt: torch.optim.Optimizer, saved: dict, source: Source | None = None) -> None:
    """Load a state_dict of `opt` into the tensors it already holds, so no device memory is allocated (`source`: where
    a copy on disk reads its tensors from)."""
    groups, saved_groups = opt.param_groups, saved["param_groups"]
    pairs = [(p, i) for g, sg in zip(groups, saved_groups) for p, i in zip(g["params"], sg["params"])]
    if not _same_layout(opt, saved, pairs):  # keys, shapes or dtypes changed: torch allocates afresh
        opt.load_state_dict(clone_cpu(saved) if source is None else map_tensors(saved, _reader(source, "cpu")))
        return
    for g, sg in zip(groups, saved_groups):
        g.update({k: copy.deepcopy(v) for k, v in sg.items() if k != "params"})
    for p, i in pairs:
        old = saved["state"].get(i)
        if old is None:
            opt.state.pop(p, None)
            continue
        cur = opt.state[p]
        for k, v in old.items():
            if source is not None and isinstance(v, LEAVES):
                source.read_into(v, cur[k])
            elif isinstance(v, torch.Tensor):
                cur[k].copy_(v)
            else:
                cur[k] = copy.deepcopy(v)


def _same_layout(opt: torch.optim.Optimizer, saved: dict, pairs: list) -> bool:
    """True when every saved state tensor has a tensor of its shape and dtype to be copied into."""
    groups, saved_groups = opt.param_groups, saved["param_groups"]
    if len(groups) != len(saved_groups) or any(
        len(g["params"]) != len(sg["params"]) for g, sg in zip(groups, saved_groups)
    ):
        return False
    for p, i in pairs:
        old, cur = saved["state"].get(i), opt.state.get(p)
        if old is None:
            continue
        if cur is None or cur.keys() != old.keys():
            return False
        for k, v in old.items():
            if isinstance(v, LEAVES) and not (
                isinstance(cur[k], torch.Tensor) and cur[k].shape == v.shape and cur[k].dtype == v.dtype
            ):
                return False
    return True
