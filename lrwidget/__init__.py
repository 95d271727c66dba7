"""lrwidget: choose a learning rate by pointing at the lr_find curve, then train one cycle, in Jupyter."""

from __future__ import annotations

from typing import Any

from .core import recorder
from .core.data import DataLoaders
from .core.learner import Learner, LRFindResult
from .core.metrics import accuracy, error_rate
from .core.search import LRSearchResult
from .core.suggest import suggest_lrs
from .integrations.vision import cnn_learner, vision_learner

__all__ = [
    "Learner",
    "DataLoaders",
    "LRWidget",
    "LRFindResult",
    "LRSearchResult",
    "vision_learner",
    "cnn_learner",
    "accuracy",
    "error_rate",
    "suggest_lrs",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import LRWidget (ipywidgets, bqplot) on first use, so scripts and GPU jobs run the core without them."""
    if name == "LRWidget":
        from .widget import LRWidget

        globals()["LRWidget"] = LRWidget
        return LRWidget
    raise AttributeError(f"module 'lrwidget' has no attribute {name!r}")


def _charts() -> Any:
    """The widget's charts, imported (with bqplot) at the first figure a recorder draws."""
    from .widget import charts

    return charts


recorder.draw_with(_charts)
