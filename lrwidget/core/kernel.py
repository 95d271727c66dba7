"""The running Jupyter kernel, if any (interrupts and figures ask)."""

from __future__ import annotations

import sys
from typing import Any


def kernel() -> Any:
    """The running IPython kernel, or None outside one (IPython is never imported here for the asking)."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    ip = get_ipython()
    return getattr(ip, "kernel", None) if ip is not None else None
