"""LRFindResult, lr_find's curve and suggestions as an immutable tuple, and fastai's `suggest_funcs` over it."""

from __future__ import annotations

import math
import reprlib
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
ALL_FIELDS += ("band", "spread", "repeats")  # lr_find(repeats=k): added in version 2
CURVES = ("lrs", "losses", "raw_losses")
FORMAT, VERSION = "lrwidget.LRFindResult", 2  # to_dict's "format" and "version" (version 1 is read too)
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}  # how to_dict writes floats JSON has no number for


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
    band: tuple[np.ndarray, np.ndarray] | None  # repeats > 1: the lowest and highest smoothed loss of the repeats
    spread: MappingProxyType  # repeats > 1: max/min of each suggestion over the repeats (None: fewer than one gave it)
    repeats: int  # the range tests the curve is the median of

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
        band: tuple[Any, Any] | None = None,
        spread: dict[str, float | None] | None = None,
        repeats: int = 1,
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
            "band": None if band is None else (_frozen_array(band[0]), _frozen_array(band[1])),
            "spread": MappingProxyType(dict(spread or {})),
            "repeats": int(repeats),
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

    def fields(self) -> dict[str, Any]:
        """Every field as the constructor takes it (plain dicts)."""
        d = {k: self.__dict__[k] for k in ALL_FIELDS}
        d.update({k: dict(d[k]) for k in ("reasons", "points", "extra", "spread")})
        return d

    def _replace(self, **changes: Any) -> LRFindResult:
        """A copy with some fields changed, as a namedtuple's `_replace`."""
        unknown = set(changes) - set(ALL_FIELDS)
        if unknown:
            raise TypeError(f"LRFindResult has no field {sorted(unknown)[0]!r}")
        return type(self)(**{**self.fields(), **changes})

    def __reduce__(self) -> tuple:
        return _rebuild, (self.fields(),)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON takes it (allow_nan=False): nan, inf, -inf as the strings "nan", "inf", "-inf"."""
        f = self.__dict__
        return {
            "format": FORMAT,
            "version": VERSION,
            **{k: [json_float(x) for x in f[k].tolist()] for k in CURVES},
            **{k: json_float(f[k]) for k in FIELDS},
            "reasons": dict(self.reasons),
            "points": {k: [json_float(lr), json_float(loss)] for k, (lr, loss) in self.points.items()},
            "num_it": self.num_it,
            "end_reason": self.end_reason,
            "order": list(self.order),
            "extra": {k: json_float(v) for k, v in self.extra.items()},
            "band": None if self.band is None else [[json_float(x) for x in b.tolist()] for b in self.band],
            "spread": {k: json_float(v) for k, v in self.spread.items()},
            "repeats": self.repeats,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LRFindResult:
        """The result `to_dict` gave, every key checked first: TypeError if `d` is not a dict, else ValueError."""
        if not isinstance(d, dict):
            raise TypeError(f"LRFindResult.from_dict takes a dict (as to_dict gives), got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise ValueError(f"not an lrwidget lr_find result: format is {_got(d.get('format'))}, not {FORMAT!r}")
        version = _int("version", d.get("version"), 1)
        if version > VERSION:
            raise ValueError(f"version {version} is newer than this lrwidget reads ({VERSION}): upgrade lrwidget")
        missing = [k for k in ALL_FIELDS[: -3 if version < 2 else None] if k not in d]
        if missing:
            raise ValueError(f"an lr_find result needs the key {missing[0]!r} (missing: {', '.join(missing)})")
        f: dict[str, Any] = {k: _typed(k, d[k], list, " of numbers") for k in CURVES}
        f.update({k: [read_float(f"{k}[{i}]", x) for i, x in enumerate(f[k])] for k in CURVES})
        if len({len(f[k]) for k in CURVES}) > 1:
            lengths = ", ".join(f"{k} {len(f[k])}" for k in CURVES)
            raise ValueError(f"lrs, losses and raw_losses must be lists of the same length, got {lengths}")
        f.update({k: read_float(k, d[k], none=True) for k in FIELDS})
        f["reasons"] = {k: _typed(f"reasons[{k!r}]", v, str) for k, v in _typed("reasons", d["reasons"], dict).items()}
        f["points"] = {k: _pair(f"points[{k!r}]", v) for k, v in _typed("points", d["points"], dict).items()}
        f["extra"] = {
            k: read_float(f"extra[{k!r}]", v, none=True) for k, v in _typed("extra", d["extra"], dict).items()
        }
        f["num_it"], f["end_reason"] = _int("num_it", d["num_it"], 0), _typed("end_reason", d["end_reason"], str)
        f["repeats"] = _int("repeats", d.get("repeats", 1), 1)
        f["spread"] = {
            k: read_float(f"spread[{k!r}]", v, none=True)
            for k, v in _typed("spread", d.get("spread", {}), dict).items()
        }
        band = d.get("band")
        if band is not None:
            pair = _typed("band", band, list)
            rows = [_typed(f"band[{j}]", b, list) for j, b in enumerate(pair)]
            if len(rows) != 2 or any(len(r) != len(f["lrs"]) for r in rows):
                raise ValueError("band must be two lists of numbers as long as lrs: the lowest and highest loss")
            f["band"] = tuple([read_float(f"band[{j}][{i}]", x) for i, x in enumerate(r)] for j, r in enumerate(rows))
        f["order"] = [_typed(f"order[{i}]", k, str) for i, k in enumerate(_typed("order", d["order"], list))]
        for k in f["order"]:
            if k not in FIELDS and k not in FIELD_OF and k not in f["extra"]:
                raise ValueError(f"order names {k!r}: not one of {(*FIELDS, *FIELD_OF)} nor a key of extra")
        return cls(**f)

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


def _got(v: Any) -> str:
    return f"{reprlib.repr(v)} ({type(v).__name__})"


def json_float(x: float | None) -> float | str | None:
    """A float as JSON's allow_nan=False takes it: finite as a number, else "nan", "inf" or "-inf"."""
    return None if x is None else float(x) if math.isfinite(x) else repr(float(x))


def _typed(key: str, v: Any, kind: type, of: str = "") -> Any:
    """`v`, checked to be a `kind` (a dict's keys to be str): else a ValueError naming `key`."""
    if not isinstance(v, kind) or (kind is dict and not all(isinstance(k, str) for k in v)):
        expected = {list: "a list", str: "a str", dict: "a dict with str keys"}[kind] + of
        raise ValueError(f"{key} must be {expected}, got {_got(v)}")
    return v


def read_float(key: str, v: Any, none: bool = False) -> float | None:
    """A number written by `json_float` (None too where `none`), read back: else a ValueError naming `key`."""
    if v is None and none:
        return None
    if isinstance(v, str) and v in NON_FINITE:
        return NON_FINITE[v]
    if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool) and v.bit_length() < 1024):
        return float(v)
    expected = "a number" + " or None" * none + ' ("nan", "inf" or "-inf" where not finite)'
    raise ValueError(f"{key} must be {expected}, got {_got(v)}")


def _pair(key: str, v: Any) -> tuple[float, float]:
    if not isinstance(v, list) or len(v) != 2:
        raise ValueError(f"{key} must be a list [lr, loss] of two numbers, got {_got(v)}")
    return read_float(f"{key}[0]", v[0]), read_float(f"{key}[1]", v[1])


def _int(key: str, v: Any, least: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < least:
        raise ValueError(f"{key} must be an int >= {least}, got {_got(v)}")
    return v


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
    fields = res.fields()
    for f in funcs:
        if f in OURS:
            continue
        key = _key(f)
        if len(losses) < 2:
            value, point, why = None, None, res.reasons.get(key) or suggest.too_short(len(losses))
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
