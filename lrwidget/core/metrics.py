"""Classification metrics, computed on the device and averaged over the validation set."""

from __future__ import annotations

import torch


def accuracy(out: torch.Tensor, targ: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Fraction of predictions (argmax over `axis`) equal to the target."""
    pred = out.argmax(dim=axis)
    if pred.shape != targ.shape:
        pred, targ = pred.reshape(-1), targ.reshape(-1)
        if pred.shape != targ.shape:
            raise ValueError(
                f"accuracy: predictions of shape {tuple(pred.shape)} do not match targets of shape {tuple(targ.shape)}"
            )
    return (pred == targ).float().mean()


def error_rate(out: torch.Tensor, targ: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """1 - accuracy."""
    return 1 - accuracy(out, targ, axis)
