"""An exact copy of what a run changes (weights, optimizer, module modes, grads, every random state), kept in host
memory and put back in place: lr_find leaves the learner as it found it."""

from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import torch
from torch import nn


def clone_cpu(o: Any) -> Any:
    """A deep copy with every tensor copied to host memory."""
    return copy_to(o, torch.device("cpu"))


def copy_to(o: Any, device: torch.device) -> Any:
    """A deep copy with every tensor copied to `device`."""
    if isinstance(o, torch.Tensor):
        return o.detach().to(device, copy=True)
    if isinstance(o, dict):
        return {k: copy_to(v, device) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return type(o)(copy_to(v, device) for v in o)
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


def take(model: nn.Module, opt: Any, train_dl: Any, device: torch.device) -> dict:
    """Model, optimizer (None: not made yet), module modes, grads and every random state, copied to host memory."""
    return {
        "model": clone_cpu(model.state_dict()),
        "opt": None if opt is None else clone_cpu(opt.state_dict()),
        "modes": [(m, m.training) for m in model.modules()],
        "grads": [(p, None if p.grad is None else p.grad.detach().to("cpu", copy=True)) for p in model.parameters()],
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


def restore(s: dict, model: nn.Module, opt: Any, train_dl: Any) -> None:
    """Put back what `take` saved, into the tensors the model and optimizer already hold; `s` stays as it was."""
    # `s` may be restored again (the widget's same start): nothing of it may end up shared with the live state
    model.load_state_dict(s["model"])
    if isinstance(opt, torch.optim.Optimizer):
        load_opt_in_place(opt, s["opt"])
    elif opt is not None:  # another optimizer with a state_dict (fastai's): its own load, from a copy
        opt.load_state_dict(copy_to(s["opt"], _device_of(model)))
    for m, training in s["modes"]:
        m.training = training
    for p, g in s["grads"]:
        p.grad = None if g is None else g.to(p.device, copy=True)
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
    if getattr(train_dl, "persistent_workers", False) and s["workers"] is None and train_dl._iterator is not None:
        # the run started the loader's worker processes, whose random state has moved on: end them, so that the
        # next epoch starts them afresh from the restored generators, as it would have without the run
        it, train_dl._iterator = train_dl._iterator, None
        it._shutdown_workers()


def load_opt_in_place(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Load a state_dict of `opt` into the tensors it already holds, so no device memory is allocated."""
    groups, saved_groups = opt.param_groups, saved["param_groups"]
    pairs = [(p, i) for g, sg in zip(groups, saved_groups) for p, i in zip(g["params"], sg["params"])]
    if not _same_layout(opt, saved, pairs):
        opt.load_state_dict(clone_cpu(saved))  # keys, shapes or dtypes changed: torch allocates afresh
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
            if isinstance(v, torch.Tensor):
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
            if isinstance(v, torch.Tensor) and not (
                isinstance(cur[k], torch.Tensor) and cur[k].shape == v.shape and cur[k].dtype == v.dtype
            ):
                return False
    return True
