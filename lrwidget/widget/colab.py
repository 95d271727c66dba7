"""Colab's custom widget manager, which bqplot (a third-party widget) needs: turned on once per kernel."""

from __future__ import annotations

import sys
import warnings
from typing import Any

colab_tried: Any = None  # the google.colab module it was tried for: once per kernel, the manager stays on


def enable_colab_widgets() -> None:
    """In Colab, turn on its custom widget manager (bqplot is a third-party widget), once; elsewhere do nothing."""
    global colab_tried
    # Colab's kernel has imported google.colab before any cell runs; anywhere else it is not ours to import
    colab = sys.modules.get("google.colab")
    if colab is None or colab is colab_tried:
        return
    colab_tried = colab
    try:
        from google.colab import output

        output.enable_custom_widget_manager()
    except Exception as e:  # the widget must still be built: Colab then shows nothing of it, the warning says why
        warnings.warn(
            f"lrwidget could not turn on Colab's custom widget manager ({type(e).__name__}: {e}), so the chart "
            "may not show; run `from google.colab import output; output.enable_custom_widget_manager()` yourself",
            RuntimeWarning,
            stacklevel=2,
        )
