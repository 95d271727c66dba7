"""Losses and metrics: the default loss, shape checks made before the loss is called, one number per batch. The
user's own errors keep their type and message."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .checks import callable_name


class MSELossFlat(nn.MSELoss):
    """fastai's MSELossFlat: mean squared error over the flattened output and target, so (N, 1) meets (N,)."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return super().forward(out.reshape(-1), y.reshape(-1))


def default_loss_for(y: Any) -> nn.Module:
    """Cross-entropy for integer class targets, fastai's flattened mean squared error for float targets."""
    if isinstance(y, torch.Tensor) and y.is_floating_point():
        return MSELossFlat()
    return nn.CrossEntropyLoss()


def loss_name(f: Any) -> str:
    """How a loss function is named in messages: its class for a module, else its function name."""
    return type(f).__name__ if isinstance(f, nn.Module) else getattr(f, "__name__", repr(f))


def _mismatch(lf: Any, out: torch.Tensor, y: torch.Tensor) -> str:
    return (
        f"the loss function {loss_name(lf)} cannot compare the model's output of shape {tuple(out.shape)} with the "
        f"target of shape {tuple(y.shape)}: make the model's last layer match the target"
    )


def check_shapes(lf: Any, out: Any, y: Any) -> None:
    """Refuse, before the loss is called, a mismatch that torch's own losses would broadcast or crash the GPU on."""
    if not (isinstance(out, torch.Tensor) and isinstance(y, torch.Tensor)):
        return
    if isinstance(lf, (nn.CrossEntropyLoss, nn.NLLLoss)) and not y.is_floating_point():
        if out.ndim == 2 and y.ndim == 2 and y.shape[1] == 1 and out.shape[0] == y.shape[0]:
            raise ValueError(
                f"the class targets have shape {tuple(y.shape)}, an extra dimension of size 1: {loss_name(lf)} "
                f"wants shape ({y.shape[0]},); make the dataset yield y.squeeze(1)"
            )
        if out.ndim != y.ndim + 1 or out.shape[0] != y.shape[0] or out.shape[2:] != y.shape[1:]:
            raise ValueError(
                _mismatch(lf, out, y) + f" (expected output (batch, n_classes), here "
                f"({y.shape[0] if y.ndim else '?'}, n_classes))"
            )
        hi = int(y.max()) if y.numel() else -1  # one sync per run: a bad index would kill a CUDA context
        if hi >= out.shape[1]:
            raise ValueError(
                _mismatch(lf, out, y) + f": the target holds class {hi} but the model outputs only {out.shape[1]} "
                f"classes (set n_out to at least {hi + 1})"
            )
    elif isinstance(lf, MSELossFlat):
        if out.numel() != y.numel():
            raise ValueError(_mismatch(lf, out, y) + " (this loss needs one output per target value)")
    elif isinstance(lf, (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.BCEWithLogitsLoss)):
        if out.shape != y.shape:
            raise ValueError(_mismatch(lf, out, y) + " (this loss needs equal shapes)")


def check_loss_value(lf: Any, loss: Any, own: bool = False) -> None:
    """Refuse a loss that is not one number per batch (checked on a run's first batch); `own`: the model's."""
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return
    got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
    if own:
        raise ValueError(
            f"the model {loss_name(lf)} takes `labels`, so it was given the whole batch to compute its own loss, "
            f"but the loss in its output is {got}: return one number (its output's `loss`, a dict's 'loss', or a "
            "tuple's first item), or give Learner(..., loss_func=...) to compute the loss from the output"
        )
    raise ValueError(
        f"the loss function {loss_name(lf)} returned {got}; training needs one number per batch: use "
        "reduction='mean' (the default), or take .mean() of it"
    )


def output_loss(out: Any) -> Any:
    """The loss a model computed itself: a ModelOutput's or a dict's `loss`, or a tuple's first item."""
    if isinstance(out, Mapping):  # transformers' ModelOutput is an OrderedDict: a missing loss is left out of it
        return out.get("loss")
    if isinstance(out, (tuple, list)) and out:
        return out[0]
    return getattr(out, "loss", out)


def prediction(out: Any) -> Any:
    """What metrics (and lrwidget's default loss) see of an output: a ModelOutput's or a dict's `logits`, if any."""
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    return out


def one_number(f: Callable, v: Any, dev: torch.device) -> torch.Tensor:
    """A loss or metric's value for a batch as a 0-d float tensor on `dev`; anything else is refused by name."""
    try:
        t = torch.as_tensor(v, device=dev)
    except (TypeError, ValueError, RuntimeError):  # only this conversion: f's own errors were raised already
        t = None
    if t is None or t.numel() != 1:
        got = f"shape {tuple(t.shape)}" if t is not None else type(v).__name__
        raise ValueError(
            f"{callable_name(f)} returned {got} for a validation batch; a loss or metric must return one number per "
            "batch (e.g. average it with .mean())"
        )
    return t.float().reshape(())
