"""What lrwidget needs of a Jupyter kernel: showing a figure in it, and the kernel object itself."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def kernel() -> Any:
    """The running IPython kernel, or None outside one (IPython is never imported here for the asking)."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    ip = get_ipython()
    return getattr(ip, "kernel", None) if ip is not None else None


def show_in_notebook(make: Callable[[], Any]) -> None:
    """Display the figure `make()` builds when running inside a Jupyter kernel; do nothing elsewhere."""
    if kernel() is None:
        return
    from IPython.display import display

    display(make())
