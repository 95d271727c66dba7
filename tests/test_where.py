"""Where the widget runs, without the place itself: Colab's custom widget manager, with a stand-in google.colab."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings

import pytest
from torch import nn

import lrwidget.widget.colab as colab_manager
from lrwidget import Learner, LRWidget
from lrwidget.data import digits

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class StandInOutput:
    """google.colab.output's one function lrwidget calls, counting its calls (and raising, if told to)."""

    def __init__(self, error: Exception | None = None):
        self.calls, self.error = 0, error

    def enable_custom_widget_manager(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


@pytest.fixture
def colab(monkeypatch):
    """Make this process look like a Colab kernel to lrwidget, as a kernel that has not yet shown a widget."""
    monkeypatch.setattr(colab_manager, "colab_tried", None)

    def install(output: StandInOutput) -> StandInOutput:
        google, colab = types.ModuleType("google"), types.ModuleType("google.colab")
        colab.output, google.colab = output, colab
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setitem(sys.modules, "google.colab", colab)
        return output

    return install


def widget() -> LRWidget:
    return LRWidget(Learner(digits(), nn.Linear(64, 10)), epochs=1)


def shown(w: LRWidget) -> dict:
    """What IPython publishes when a cell displays `w`."""
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    return bundle


def test_colab_widget_manager_enabled_once_per_kernel(colab):
    out = colab(StandInOutput())
    shown(widget())
    shown(widget())
    assert out.calls == 1


def test_a_widget_made_before_google_colab_was_imported_enables_it_at_its_first_display(colab, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    w = widget()
    out = colab(StandInOutput())
    assert out.calls == 0
    shown(w)
    shown(w)
    assert out.calls == 1


def test_another_colab_module_is_enabled_again(colab):
    first = colab(StandInOutput())
    shown(widget())
    second = colab(StandInOutput())  # a new google.colab: another kernel's, as far as lrwidget can tell
    shown(widget())
    assert first.calls == second.calls == 1


def test_no_colab_no_call(monkeypatch):
    monkeypatch.setattr(colab_manager, "colab_tried", None)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shown(widget())
    assert not [w for w in caught if "Colab" in str(w.message)]
    assert "google.colab" not in sys.modules and colab_manager.colab_tried is None


def test_colab_failure_warns_once_and_the_widget_works(colab):
    out = colab(StandInOutput(ValueError("Unknown widgets version: 9")))
    with pytest.warns(RuntimeWarning, match="custom widget manager.*ValueError: Unknown widgets version"):
        w = widget()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w2 = widget()
    assert not [m for m in caught if "Colab" in str(m.message)]  # the second widget: no second try, no warning
    assert out.calls == 1
    shown(w), shown(w2)
    w.lr_min, w.lr_steep = 1e-3, 1e-2
    assert w.fit()
    w.wait(timeout=60)
    assert len(w.learn.recorder.values) == 1 and "fit done" in w.status


def test_importing_lrwidget_leaves_google_colab_alone():
    code = "import sys, lrwidget, lrwidget.widget; print('google.colab' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
