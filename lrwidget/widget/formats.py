"""How the widget writes and reads values: learning rates, times, errors."""

from __future__ import annotations

import math
from typing import Any


def parse_lr(text: Any) -> float | None:
    """The positive finite number written in `text`, or None."""
    try:
        v = float(str(text).strip())
    except ValueError:
        return None
    return v if math.isfinite(v) and v > 0 else None


def fmt_value(v: float) -> str:
    """A learning rate for a text field: six significant digits."""
    return f"{v:.6g}"


def fmt_lr(v: float) -> str:
    """A learning rate for a label: three significant digits."""
    return f"{v:.3g}"


def fmt_time(s: float) -> str:
    """Seconds as m:ss (or h:mm:ss)."""
    if not math.isfinite(s):
        return "?"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def fmt_num(v: float) -> str:
    """A loss or a metric in a table: four decimals, a dash for none."""
    return f"{v:.4f}" if math.isfinite(v) else "—"


def error_text(e: BaseException) -> str:
    """An exception as the user's code raised it, type and message, with the notes it gained (an OOM's hint)."""
    notes = [str(n) for n in getattr(e, "__notes__", ())]
    return " ".join([f"{type(e).__name__}: {e}", *notes])
