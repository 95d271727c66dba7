"""The demo data shipped with lrwidget: scikit-learn's 8x8 digits, as DataLoaders (no download)."""

from __future__ import annotations

from numbers import Real
from pathlib import Path

import numpy as np
import torch

from .core.data import DataLoaders

__all__ = ["DataLoaders", "digits"]

DIGITS_FILE = Path(__file__).with_name("digits.npz")


def digits(
    bs: int = 64, images: bool = False, size: int = 8, valid_pct: float = 0.2, seed: int = 0, channels: int = 1
) -> DataLoaders:
    """scikit-learn's 8x8 digits (1,797, 10 classes), shipped: flat 64-vectors, or (channels, size, size) images."""
    # valid_pct=0 gives no validation set
    if not (isinstance(valid_pct, Real) and not isinstance(valid_pct, bool) and 0 <= valid_pct < 1):
        raise ValueError(
            f"valid_pct must be a fraction in [0, 1), got {valid_pct!r}: the share of the 1,797 "
            "digits held out for validation (0.2 is the default)"
        )
    with np.load(DIGITS_FILE) as f:
        x = torch.from_numpy(f["x"].astype(np.float32) / 16.0)
        y = torch.from_numpy(f["y"].astype(np.int64))
    x = (x - 0.3) / 0.4  # roughly zero mean, unit variance
    if images:
        x = x.view(-1, 1, 8, 8)
        if size != 8:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = x.expand(-1, channels, -1, -1).contiguous()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_valid = int(len(x) * valid_pct)
    vi, ti = perm[:n_valid], perm[n_valid:]
    if n_valid == 0:
        return DataLoaders.from_tensors(x[ti], y[ti], bs=bs, seed=seed)
    return DataLoaders.from_tensors(x[ti], y[ti], x[vi], y[vi], bs=bs, seed=seed)
