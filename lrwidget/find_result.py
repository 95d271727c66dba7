"""LRFindResult, lr_find's curve and suggestions as an immutable tuple, and fastai's `suggest_funcs` over it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from . import suggest
from .checks import callable_name

__all__ = ["LRFindResult", "check_suggest_funcs", "apply_suggest_funcs", "warn_missing"]

FIELDS = ("lr_min", "lr_steep", "valley", "slide")
# fastai's function names -> the fields that hold them
FIELD_OF = {"minimum": "lr_min", "steep": "lr_steep", "valley": "valley", "slide": "slide"}
OURS = (suggest.minimum, suggest.steep, suggest.valley, suggest.slide)  # computed already, by suggest_lrs
# every field, in the constructor's order
ALL_FIELDS = ("lrs", "losses", "raw_losses", *FIELDS, "reasons", "points", "num_it", "end_reason", "order", "extra")


def _frozen_array(a: Any) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


class LRFindResult(tuple):
    """An lr_find curve and its suggestions: an immutable tuple of the suggestions it unpacks to."""

    # `lr_min, lr_steep` by default; with fastai's `suggest_funcs=(...)` those, in order, each also an attribute
    # named after its function, as fastai's SuggestedLRs (a namedtuple). `_replace` makes a changed copy: the
    # hash (the tuple's) never changes

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    lr_min: float | None
    lr_steep: float | None
    valley: float | None
    slide: float | None
    reasons: MappingProxyType
    points: MappingProxyType
    num_it: int
    end_reason: str
    order: tuple[str, ...]
    extra: MappingProxyType  # suggestions of functions of other names

    def __new__(
        cls,
        lrs: Any,
        losses: Any,
        raw_losses: Any,
        lr_min: float | None,
        lr_steep: float | None,
        valley: float | None,
        slide: float | None,
        reasons: dict[str, str],
        points: dict[str, tuple[float, float]],
        num_it: int,
        end_reason: str,
        order: Sequence[str] = ("lr_min", "lr_steep"),
        extra: dict[str, float | None] | None = None,
    ) -> LRFindResult:
        fields = {
            "lrs": _frozen_array(lrs),
            "losses": _frozen_array(losses),
            "raw_losses": _frozen_array(raw_losses),
            "lr_min": lr_min,
            "lr_steep": lr_steep,
            "valley": valley,
            "slide": slide,
            "reasons": MappingProxyType(dict(reasons)),
            "points": MappingProxyType({k: tuple(v) for k, v in points.items()}),
            "num_it": int(num_it),
            "end_reason": end_reason,
            "order": tuple(order),
            "extra": MappingProxyType(dict(extra or {})),
        }
        values = [fields["extra"][k] if k in fields["extra"] else fields[FIELD_OF.get(k, k)] for k in fields["order"]]
        self = super().__new__(cls, values)
        self.__dict__.update(fields)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"an LRFindResult cannot be changed (set {name!r}): res._replace({name}=...) makes a copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"an LRFindResult cannot be changed (delete {name!r})")

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"LRFindResult has no suggestion or attribute {name!r}")

    def _fields_dict(self) -> dict[str, Any]:
        """Every field as the constructor takes it (plain dicts)."""
        d = {k: self.__dict__[k] for k in ALL_FIELDS}
        d.update({k: dict(d[k]) for k in ("reasons", "points", "extra")})
        return d

    def _replace(self, **changes: Any) -> LRFindResult:
        """A copy with some fields changed, as a namedtuple's `_replace`."""
        unknown = set(changes) - set(ALL_FIELDS)
        if unknown:
            raise TypeError(f"LRFindResult has no field {sorted(unknown)[0]!r}")
        return type(self)(**{**self._fields_dict(), **changes})

    def __reduce__(self) -> tuple:
        return _rebuild, (self._fields_dict(),)

    @property
    def _fields(self) -> tuple[str, ...]:
        """The names of the values it holds, as a namedtuple's."""
        return self.order

    def _asdict(self) -> dict[str, float | None]:
        """The values it holds by name, as a namedtuple's."""
        return dict(zip(self.order, self))

    def __eq__(self, other: object) -> bool:
        """Equal to what it unpacks to, as fastai's SuggestedLRs is; to another result, by curve too."""
        if isinstance(other, LRFindResult):
            return (
                tuple.__eq__(self, other)
                and self.suggestions == other.suggestions
                and all(
                    np.array_equal(getattr(self, k), getattr(other, k), equal_nan=True)
                    for k in ("lrs", "losses", "raw_losses")
                )
            )
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = tuple.__hash__

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
        return {k: self.reasons.get(k, "no value") for k, v in zip(self.order, self) if v is None}

    @property
    def suggestions(self) -> dict[str, float | None]:
        """Every suggestion by name: the four, then those of other suggest_funcs."""
        return {**{k: self.__dict__[k] for k in FIELDS}, **self.extra}

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={v!r}" for k, v in self.suggestions.items())
        return f"LRFindResult({s}; {len(self.lrs)} steps, {self.end_reason})"


def _rebuild(fields: dict[str, Any]) -> LRFindResult:
    return LRFindResult(**fields)


def _key(f: Callable) -> str:
    """Where a function's suggestion is kept: one of the four fields for fastai's names, else its own name."""
    return FIELD_OF.get(callable_name(f), callable_name(f))


def check_suggest_funcs(funcs: Any) -> tuple[Callable, ...] | None:
    """`suggest_funcs` as fastai takes it (a function or a sequence of them), checked before lr_find runs."""
    if funcs is None:
        return None
    funcs = (funcs,) if callable(funcs) else funcs
    if not isinstance(funcs, Sequence) or isinstance(funcs, str) or not funcs or not all(map(callable, funcs)):
        raise TypeError(
            "suggest_funcs must be a function or a sequence of functions such as (minimum, steep, valley, slide) "
            f"from lrwidget.suggest or fastai, got {funcs!r}"
        )
    keys = [_key(f) for f in funcs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"suggest_funcs names a suggestion twice: {[callable_name(f) for f in funcs]}")
    return tuple(funcs)


def apply_suggest_funcs(res: LRFindResult, funcs: tuple[Callable, ...]) -> LRFindResult:
    """A new result answering as fastai's SuggestedLRs for `funcs`, called as fastai calls them."""
    lrs, losses = suggest.trim(res.lrs, res.losses, res.num_it)
    curve = torch.tensor(lrs.tolist()), torch.tensor(losses.tolist())  # float32, as fastai builds them
    fields = res._fields_dict()
    for f in funcs:
        if f in OURS:
            continue
        key = _key(f)
        if len(losses) < 2:
            value, point, why = None, None, res.reasons.get(key) or suggest._short(len(losses))
        else:
            out = f(*curve, res.num_it)
            value, point = out if isinstance(out, tuple) else (out, None)
            value, why = (None, f"{callable_name(f)} gave no value") if value is None else (float(value), None)
        if key in FIELDS:
            fields[key] = value
        else:
            fields["extra"][key] = value
        fields["points"].pop(key, None)
        fields["reasons"].pop(key, None)
        if point is not None:
            fields["points"][key] = (float(point[0]), float(point[1]))
        if why is not None:
            fields["reasons"][key] = why
    fields["order"] = tuple(map(_key, funcs))
    return LRFindResult(**fields)


def warn_missing(res: LRFindResult, lr: float, stacklevel: int = 3) -> None:
    """Warn, from lr_find to its caller, of the suggestions that came out None and why."""
    by_reason: dict[str, list[str]] = {}
    for name, why in res.missing.items():
        by_reason.setdefault(why, []).append(name)
    if not by_reason:
        return
    said = "; ".join(f"{', '.join(names)}: {why}" for why, names in by_reason.items())
    warnings.warn(
        f"lr_find could not suggest {said}. Those are None, and fit_one_cycle(lr_max=None) trains at learn.lr={lr:g}",
        UserWarning,
        stacklevel=stacklevel,
    )
