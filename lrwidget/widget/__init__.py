"""LRWidget, composed of parts: markers, charts, the runs and their start, the background runner."""

from .lr_widget import LRWidget

__all__ = ["LRWidget"]
