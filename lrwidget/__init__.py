"""lrwidget: choose a learning rate by pointing at the lr_find curve, then train one cycle, in Jupyter."""
from .data import DataLoaders
from .learner import Learner, LRFindResult
from .metrics import accuracy, error_rate
from .suggest import suggest_lrs
from .vision import cnn_learner, vision_learner
from .widget import LRWidget

__all__ = ["Learner", "DataLoaders", "LRWidget", "LRFindResult", "vision_learner", "cnn_learner",
           "accuracy", "error_rate", "suggest_lrs"]
__version__ = "0.1.0"
