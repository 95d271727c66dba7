"""When lr_find's suggestions are not to be trusted: one that moves over the repeats, or a curve too flat to read.

Two checks, both pure functions of an lr_find result, said in the status after Find LR:

* **spread**: with `lr_find(repeats=k)`, `spread[name]` is max/min of a suggestion over the k range tests. Over
  SPREAD_LIMIT (3x) for a suggestion a marker sits on, the markers' place is chance: "lr_steep moved 4.2x over 3
  repeats: unreliable, try Search".
* **a flat curve**: its drop (the loss at the start of the usable curve, the median of its first tenth, minus its
  minimum) within its noise. With repeats, the noise is the band's widest point up to the minimum (how far apart the
  repeats' curves lie); for one curve, the spread of the raw loss around the smoothed loss over the first third of
  the usable curve (its 5th to 95th percentile), before any drop. A plateau's curve (sparse parity, a tiny BERT)
  only drops by its noise before it diverges, and its suggestions land anywhere: "flat curve, try Search".

The usable curve is the one the suggestions are read from (suggest.trim): without the first num_it//10 and the last 5
steps, cut at the first non-finite loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.find_result import LRFindResult
from ..core.suggest import trim

SPREAD_LIMIT = 3.0  # max/min over the repeats above which a suggestion is unreliable
FIRST_PART = 3  # one curve's noise: over the first 1/FIRST_PART of the usable curve (at least MIN_NOISE_POINTS)
MIN_NOISE_POINTS = 10
QUANTILES = (5.0, 95.0)  # the spread of the raw loss around the smoothed: between these percentiles


@dataclass(frozen=True)
class Verdict:
    """What the checks found: the curve's drop and noise, and the suggestions that moved too much."""

    drop: float  # the usable curve's start minus its minimum (nan: too short to say)
    noise: float  # what the drop is held against (nan: too short to say)
    noise_from: str  # 'band' (the repeats) or 'raw' (one curve's raw loss around its smoothed loss)
    repeats: int = 1
    moved: dict[str, float] = field(default_factory=dict)  # suggestion a marker sits on -> its spread, if over 3x

    @property
    def flat(self) -> bool:
        """The curve's drop is within its noise."""
        return math.isfinite(self.drop) and math.isfinite(self.noise) and self.drop <= self.noise

    @property
    def reliable(self) -> bool:
        """Neither check found anything."""
        return not self.flat and not self.moved

    def said(self) -> str:
        """What the status says ('' when reliable)."""
        out = [f"{k} moved {s:.1f}x over {self.repeats} repeats: unreliable, try Search" for k, s in self.moved.items()]
        if self.flat:
            what = f"the band of {self.repeats} repeats" if self.noise_from == "band" else "the raw loss's spread"
            out.append(
                f"flat curve, try Search: the loss drops {self.drop:.3g} from its start, within its noise "
                f"({self.noise:.3g}, {what})"
            )
        return "; ".join(out)


def judge(
    lrs: Any,
    losses: Any,
    raw_losses: Any,
    num_it: int | None,
    band: tuple[Any, Any] | None = None,
    spread: dict[str, float | None] | None = None,
    repeats: int = 1,
    on: Sequence[str] = (),
) -> Verdict:
    """Check a curve (lrs, smoothed `losses`, `raw_losses`; `band` (lo, hi) and `spread` of its repeats) and the
    suggestions `on` which the markers sit."""
    moved = {k: float(s) for k in dict.fromkeys(on) if (s := (spread or {}).get(k)) is not None and s > SPREAD_LIMIT}
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if len(lrs) < 7:  # nothing left once trimmed
        return Verdict(math.nan, math.nan, "raw", repeats, moved)
    _, y = trim(lrs, losses, num_it)
    n, skip = len(y), (len(lrs) if num_it is None else num_it) // 10
    if n < 3:
        return Verdict(math.nan, math.nan, "raw", repeats, moved)
    start = float(np.median(y[: max(3, n // 10)]))
    low = int(np.argmin(y))
    drop = start - float(y[low])
    if band is not None and repeats > 1:
        lo, hi = (np.asarray(b, dtype=float)[skip : skip + low + 1] for b in band)
        width = (hi - lo)[np.isfinite(hi - lo)]
        if len(width):
            return Verdict(drop, float(width.max()), "band", repeats, moved)
    raw = np.asarray(raw_losses, dtype=float)[skip : skip + n]
    k = min(n, len(raw), max(MIN_NOISE_POINTS, n // FIRST_PART))
    r = raw[:k] - y[:k]
    r = r[np.isfinite(r)]
    noise = float(np.percentile(r, QUANTILES[1]) - np.percentile(r, QUANTILES[0])) if len(r) >= 3 else math.nan
    return Verdict(drop, noise, "raw", repeats, moved)


def judge_result(res: LRFindResult, on: Sequence[str] = ()) -> Verdict:
    """`judge` on an LRFindResult (its band, spread and repeats)."""
    return judge(res.lrs, res.losses, res.raw_losses, res.num_it, res.band, dict(res.spread), res.repeats, on)
