"""Data: DataLoaders, and moving batches to the device."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

TARGET_KEYS = ("y", "target", "targets", "label", "labels")


def default_device() -> torch.device:
    """The best device this process has: CUDA, else Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def to_device(b: Any, device: torch.device, non_blocking: bool | None = None) -> Any:
    """Move a batch (tensors in tuples, lists or dicts, nested) to `device`, without blocking onto an accelerator."""
    if non_blocking is None:  # the loop decides it once per run
        device = torch.device(device)
        non_blocking = device.type != "cpu"  # a non-blocking copy to the host could be read before it lands
    if isinstance(b, torch.Tensor):
        return b if b.device == device else b.to(device, non_blocking=non_blocking)  # a no-op .to costs microseconds
    if isinstance(b, (tuple, list)):
        moved = [to_device(o, device, non_blocking) for o in b]
        return type(b)(*moved) if hasattr(b, "_fields") else type(b)(moved)  # a namedtuple takes its fields
    if isinstance(b, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in b.items()}
    raise TypeError(
        f"a batch must be a tensor, or a tuple, list or dict of tensors; got {type(b).__name__}. "
        "Make your DataLoader yield (inputs, target) pairs of tensors."
    )


def split_batch(b: Any) -> tuple[tuple, dict, Any]:
    """Split a batch into positional inputs, keyword inputs and the target."""
    if isinstance(b, (tuple, list)):
        if len(b) < 2:
            raise ValueError(
                f"a batch must hold inputs and a target, got a {type(b).__name__} "
                f"of {len(b)} item(s): yield (x, y) pairs"
            )
        return tuple(b[:-1]), {}, b[-1]
    if isinstance(b, Mapping):
        keys = [k for k in TARGET_KEYS if k in b]
        if not keys:
            raise ValueError(f"a dict batch needs its target under one of {TARGET_KEYS}; it has keys {list(b)}")
        return (), {k: v for k, v in b.items() if k != keys[0]}, b[keys[0]]
    if isinstance(b, torch.Tensor):
        raise ValueError(
            "a batch is a single tensor, with no target: training needs (inputs, target) "
            "pairs, e.g. a DataLoader over TensorDataset(x, y)"
        )
    raise TypeError(f"a batch must be a tuple, list or dict of tensors; got {type(b).__name__}")


def _n_batches(dl: Any, name: str) -> int:
    if isinstance(dl, Dataset) and not isinstance(dl, DataLoader):
        raise TypeError(
            f"the {name} data is a Dataset, which yields single samples: wrap it in a "
            f"DataLoader, e.g. DataLoader(ds, batch_size=64, shuffle={name == 'training'})"
        )
    if not isinstance(dl, Iterable):
        raise TypeError(f"the {name} data must be a DataLoader or a sized iterable of batches, got {type(dl).__name__}")
    try:
        n = len(dl)
    except TypeError:
        raise TypeError(
            f"the {name} data has no len(): lrwidget needs the number of batches per "
            "epoch for its schedules; use a map-style Dataset in a DataLoader"
        ) from None
    if n == 0:
        raise ValueError(
            f"the {name} data is empty (0 batches): give it at least one batch "
            "(check the dataset, and batch_size with drop_last=True)"
        )
    return n


class DataLoaders:
    """A training and an optional validation loader, as in fastai (`dls.train`, `dls.valid`)."""

    def __init__(self, train: Iterable, valid: Iterable | None = None, c: int | None = None):
        _n_batches(train, "training")
        if valid is not None:
            _n_batches(valid, "validation")
        self.train, self.valid, self._c = train, valid, c

    def __getitem__(self, i: int) -> Iterable | None:
        return (self.train, self.valid)[i]

    def __len__(self) -> int:
        return 2

    @property
    def c(self) -> int | None:
        """Number of model outputs the data asks for (classes), inferred where it can be."""
        if self._c is None:
            self._c = infer_n_out(self.train)
        return self._c

    @classmethod
    def from_tensors(
        cls,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_valid: torch.Tensor | None = None,
        y_valid: torch.Tensor | None = None,
        bs: int = 64,
        seed: int | None = 0,
    ) -> DataLoaders:
        """DataLoaders over in-memory tensors: shuffled training batches, pinned on CUDA."""
        if (x_valid is None) != (y_valid is None):
            raise ValueError("give both x_valid and y_valid for a validation set, or neither for none")
        for name, x, y in (("train", x_train, y_train), ("valid", x_valid, y_valid)):
            if x is not None and len(x) != len(y):
                raise ValueError(f"x_{name} has {len(x)} samples but y_{name} has {len(y)}: they must match")
        pin = torch.cuda.is_available()
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        train = DataLoader(
            TensorDataset(x_train, y_train),
            batch_size=bs,
            shuffle=True,
            drop_last=len(x_train) > bs,
            pin_memory=pin,
            generator=g,
        )
        valid = None
        if x_valid is not None:
            valid = DataLoader(TensorDataset(x_valid, y_valid), batch_size=bs, pin_memory=pin)
        return cls(train, valid)


def infer_n_out(dl: Any) -> int | None:
    """Classes or target width of a loader's dataset (torchvision `.classes`, TensorDataset labels)."""
    ds = getattr(dl, "dataset", None)
    classes = getattr(ds, "classes", None)
    if classes is not None:
        return len(classes)
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        y = ds.tensors[-1]
        if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8) and y.ndim == 1:
            return int(y.max()) + 1
        if y.is_floating_point():
            return 1 if y.ndim == 1 else int(y.shape[-1])
    return None
