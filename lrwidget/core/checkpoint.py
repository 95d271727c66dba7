"""Saving and loading a learner's weights and optimizer state (Learner.save, Learner.load)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

SAVE_FORMAT = "lrwidget.learner/1"
IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")


def save(model: nn.Module, opt: torch.optim.Optimizer, path: str | Path, with_opt: bool = True) -> Path:
    """Save the weights (and optimizer state) to `path` (`.pth` added when it has no suffix); the path written."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a folder: give a file name, e.g. {str(path / 'model.pth')!r}")
    if not path.suffix:
        path = path.with_suffix(".pth")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": SAVE_FORMAT, "model": model.state_dict()}
    if with_opt:
        state["opt"] = opt.state_dict()
    torch.save(state, path)
    return path


def load(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    device: torch.device,
    path: str | Path,
    with_opt: bool = True,
    strict: bool = True,
) -> None:
    """Load what `save` wrote into the model (and optimizer); tensors only (weights_only=True)."""
    path = Path(path)
    if not path.exists() and not path.suffix and path.with_suffix(".pth").exists():
        path = path.with_suffix(".pth")
    if not path.is_file():
        raise FileNotFoundError(f"no saved learner at {str(path)!r}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{str(path)!r} is not a file saved by Learner.save ({type(e).__name__}: {first})") from e
    if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a file saved by Learner.save (no lrwidget header); to load plain weights use "
            "learn.model.load_state_dict(torch.load(path))"
        )
    _check_loadable(model, opt, path, state, with_opt, strict)
    model.load_state_dict(state["model"], strict=strict)
    if with_opt and "opt" in state:
        # keep this optimizer's implementation (fused, foreach...): a state saved on the CPU would turn off the fused
        # CUDA kernel; loading then places each tensor, 'step' too, as that implementation needs
        for saved, g in zip(state["opt"].get("param_groups", []), opt.param_groups):
            saved.update({k: g[k] for k in IMPLEMENTATION_KEYS if k in g})
        opt.load_state_dict(state["opt"])


def _check_loadable(
    model: nn.Module, opt: torch.optim.Optimizer, path: Path, state: dict, with_opt: bool, strict: bool
) -> None:
    """Refuse, before anything is loaded, a file whose weights or optimizer groups do not fit this learner."""
    own, saved = model.state_dict(), state["model"]
    problems = [
        f"{k}: saved {tuple(v.shape)}, here {tuple(own[k].shape)}"
        for k, v in saved.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
    ][:3]
    if strict:
        missing, unexpected = [k for k in own if k not in saved], [k for k in saved if k not in own]
        problems += [f"missing {missing[:3]}"] * bool(missing) + [f"unexpected {unexpected[:3]}"] * bool(unexpected)
    if problems:
        raise ValueError(
            f"{str(path)!r} holds weights of another model ({'; '.join(problems)}); nothing was loaded. Build the "
            "same model first (strict=False loads the matching names only)"
        )
    if with_opt and "opt" in state:
        sizes = [len(g["params"]) for g in state["opt"].get("param_groups", [])]
        here = [len(g["params"]) for g in opt.param_groups]
        if sizes != here:
            raise ValueError(
                f"{str(path)!r} holds an optimizer state for parameter groups of sizes {sizes}, this learner's "
                f"optimizer has {here} (another splitter, wd_bn_bias or optimizer); nothing was loaded. Pass "
                "with_opt=False to load the weights alone"
            )
