"""Axis ticks chosen in Python: a few round values (whole numbers where the axis counts batches or epochs), so that
d3's labels never repeat.

Each axis keeps one tick format for good, set when it is made: d3's "~g" (linear) and "~e" (log) write a round value
exactly, trailing zeros trimmed, so distinct ticks always read differently. (A format changed along with the ticks
can reach bqplot's axis after them, which then wrote 1.7 ... 2.3 as "2 2 2 2" with the old one.)
"""

from __future__ import annotations

import math

LINEAR_FORMAT = "~g"
LOG_FORMAT = "~e"


def nice_step(span: float, n: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `n` ticks over `span`, as d3 picks its own."""
    raw = span / max(n, 1)
    if not (math.isfinite(raw) and raw > 0):
        return 1.0
    step = 10 ** math.floor(math.log10(raw))
    err = raw / step
    return step * (10 if err >= math.sqrt(50) else 5 if err >= math.sqrt(10) else 2 if err >= math.sqrt(2) else 1)


def linear_ticks(lo: float, hi: float, n: int = 5, whole: bool = False) -> list[float]:
    """About `n` round ticks within [lo, hi]; `whole`: integers only."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = nice_step(hi - lo, n)
    if whole:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [float(f"{first + i * step:.12g}") for i in range(count)] or [lo]


def log_ticks(lo: float, hi: float, n: int = 9) -> list[float]:
    """Ticks on a log axis from `lo` to `hi`: powers of ten (every k-th of them when there are many), or round
    mantissas (1, 2, 5, or each digit) over a narrower range."""
    if not (lo > 0 and hi > lo and math.isfinite(hi)):
        return []
    a, b = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
    if b - a >= 2:
        every = max(1, math.ceil((b - a + 1) / n))
        return [10.0**e for e in range(a, b + 1, every)]
    for mantissas in ((1, 2, 5), tuple(range(1, 10))):
        ticks = [
            float(f"{m * 10.0**e:.12g}")
            for e in range(a - 1, b + 1)
            for m in mantissas
            if lo * (1 - 1e-9) <= m * 10.0**e <= hi * (1 + 1e-9)
        ]
        if len(ticks) >= 3:
            return ticks
    return linear_ticks(lo, hi, 3)


def label(v: float) -> str:
    """About what d3's "~g" writes for `v` (for sizes: the axis label's offset)."""
    return format(v, ".6g")


def label_offset(ticks: list[float]) -> str:
    """The y axis label's distance from the axis: beyond its widest tick label (about 7 px a character)."""
    widest = max((len(label(t)) for t in ticks), default=3)
    return f"{widest * 7 + 18}px"
