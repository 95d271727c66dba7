"""LRFindResult, lr_find's curve and suggestions, and fastai's `suggest_funcs` over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

from . import suggest

__all__ = ["LRFindResult", "check_suggest_funcs", "apply_suggest_funcs"]

FIELDS = ("lr_min", "lr_steep", "valley", "slide")
# fastai's function names -> the fields that hold them
FIELD_OF = {"minimum": "lr_min", "steep": "lr_steep", "valley": "valley", "slide": "slide"}
OURS = (suggest.minimum, suggest.steep, suggest.valley, suggest.slide)  # computed already, by suggest_lrs


@dataclass(eq=False)
class LRFindResult:
    """An lr_find curve and its suggestions; unpacks as `lr_min, lr_steep = learn.lr_find()`.

    With fastai's `suggest_funcs=(...)` it unpacks to those suggestions instead, in that order, and each is also an
    attribute named after its function, as in fastai's SuggestedLRs (`res.valley`, `res.minimum`, `res.steep`).
    """

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    lr_min: float | None
    lr_steep: float | None
    valley: float | None
    slide: float | None
    reasons: dict[str, str]
    points: dict[str, tuple[float, float]]
    num_it: int
    end_reason: str
    order: tuple[str, ...] = ("lr_min", "lr_steep")
    extra: dict[str, float | None] = field(default_factory=dict)  # suggestions of functions of other names

    def _value(self, name: str) -> float | None:
        return self.extra[name] if name in self.extra else getattr(self, FIELD_OF.get(name, name))

    def __iter__(self) -> Iterator[float | None]:
        return iter([self._value(k) for k in self.order])

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> float | None:
        return [self._value(k) for k in self.order][i]

    def __eq__(self, other: object) -> bool:
        """Equal to what it unpacks to, as fastai's SuggestedLRs (a namedtuple) is; to another result, by curve too."""
        if isinstance(other, LRFindResult):
            return (
                tuple(self) == tuple(other)
                and self.suggestions == other.suggestions
                and all(
                    np.array_equal(getattr(self, k), getattr(other, k), equal_nan=True)
                    for k in ("lrs", "losses", "raw_losses")
                )
            )
        if isinstance(other, tuple):
            return tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"LRFindResult has no suggestion or attribute {name!r}")

    @property
    def minimum(self) -> float | None:
        """fastai's name for lr_min."""
        return self.lr_min

    @property
    def steep(self) -> float | None:
        """fastai's name for lr_steep."""
        return self.lr_steep

    @property
    def missing(self) -> dict[str, str]:
        """The suggestions this result unpacks to that the curve could not give, each with the reason."""
        return {k: self.reasons.get(k, "no value") for k in self.order if self._value(k) is None}

    @property
    def suggestions(self) -> dict[str, float | None]:
        """Every suggestion by name: the four, then those of other suggest_funcs."""
        return {**{k: getattr(self, k) for k in FIELDS}, **self.extra}

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={v!r}" for k, v in self.suggestions.items())
        return f"LRFindResult({s}; {len(self.lrs)} steps, {self.end_reason})"


def _name(f: Callable) -> str:
    return f.func.__name__ if isinstance(f, partial) else getattr(f, "__name__", type(f).__name__)


def _key(f: Callable) -> str:
    """Where a function's suggestion is kept: one of the four fields for fastai's names, else its own name."""
    return FIELD_OF.get(_name(f), _name(f))


def check_suggest_funcs(funcs: Any) -> tuple[Callable, ...] | None:
    """`suggest_funcs` as fastai takes it (a function or a sequence of them), checked before lr_find runs."""
    if funcs is None:
        return None
    funcs = (funcs,) if callable(funcs) else funcs
    if not isinstance(funcs, Sequence) or isinstance(funcs, str) or not funcs or not all(map(callable, funcs)):
        raise TypeError(
            f"suggest_funcs must be a function or a sequence of functions such as (minimum, steep, "
            f"valley, slide) from lrwidget.suggest or fastai, got {funcs!r}"
        )
    keys = [_key(f) for f in funcs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"suggest_funcs names a suggestion twice: {[_name(f) for f in funcs]}")
    return tuple(funcs)


def apply_suggest_funcs(res: LRFindResult, funcs: tuple[Callable, ...]) -> LRFindResult:
    """Make `res` answer as fastai's SuggestedLRs for `funcs`; ours are computed already, others are called as fastai
    calls them: `f(lrs, losses, num_it)` on the trimmed curve as float tensors, returning `(lr, (lr, loss))`."""
    lrs, losses = suggest.trim(res.lrs, res.losses, res.num_it)
    curve = torch.tensor(lrs.tolist()), torch.tensor(losses.tolist())  # float32, as fastai builds them
    for f in funcs:
        if f in OURS:
            continue
        key = _key(f)
        if len(losses) < 2:
            value, point, why = None, None, res.reasons.get(key) or suggest._short(len(losses))
        else:
            out = f(*curve, res.num_it)
            value, point = out if isinstance(out, tuple) else (out, None)
            value, why = (None, f"{_name(f)} gave no value") if value is None else (float(value), None)
        if key in FIELDS:
            setattr(res, key, value)
        else:
            res.extra[key] = value
        res.points.pop(key, None)
        res.reasons.pop(key, None)
        if point is not None:
            res.points[key] = (float(point[0]), float(point[1]))
        if why is not None:
            res.reasons[key] = why
    res.order = tuple(map(_key, funcs))
    return res
