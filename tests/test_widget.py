"""LRWidget without a browser: the browser's messages are replayed through the widgets' (dummy) comms."""

from __future__ import annotations

import contextlib
import copy
import math
import re
import time

import bqplot as bq
import ipywidgets as W
import numpy as np
import pytest
import torch
import traitlets
from torch import nn

from lrwidget import Learner, LRWidget, accuracy
from lrwidget.core.events import Observer
from lrwidget.data import digits
from lrwidget.widget.layout import widget_tree
from lrwidget.widget.style import COLORS, CSS, var

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TIMEOUT = 60


def lum(color: str) -> float:
    """WCAG's relative luminance of '#rrggbb'."""
    c = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# -- the browser, as it talks to the kernel ------------------------------------------------------------


def send(widget: W.Widget, data: dict, buffers: list | None = None) -> None:
    """Deliver a comm message from the front end to `widget`, through its comm."""
    widget.comm.handle_msg({"content": {"comm_id": widget.comm.comm_id, "data": data}, "buffers": buffers or []})


def update(widget: W.Widget, **state) -> None:
    """A front-end state update; numpy arrays travel as binary buffers, as bqplot's JS serializer sends them."""
    st, paths, bufs = {}, [], []
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            st[k] = {"dtype": str(v.dtype), "shape": list(v.shape), "type": None}
            paths.append([k, "value"])
            bufs.append(memoryview(v.tobytes()))
        else:
            st[k] = v
    send(widget, {"method": "update", "state": st, "buffer_paths": paths}, bufs)


def custom(widget: W.Widget, content: dict) -> None:
    send(widget, {"method": "custom", "content": content})


def click(button: W.Button) -> None:
    custom(button, {"event": "click"})


def drag(w: LRWidget, name: str, lr: float, drop: bool = True, update_first: bool = True) -> None:
    """Drag marker `name` to `lr` as bqplot's Scatter does: drag_start, drag, then x update and drag_end."""
    m = w.markers[name]
    x0, y = float(m.x[0]), float(m.y[0])
    custom(m, {"event": "drag_start", "point": {"x": x0, "y": y}, "index": 0})
    custom(m, {"event": "drag", "origin": {"x": x0, "y": y}, "point": {"x": lr, "y": y}, "index": 0})
    if not drop:
        return
    end = {"event": "drag_end", "point": {"x": lr, "y": y}, "index": 0}
    if not update_first:
        custom(m, end)
    update(m, x=np.array([lr], dtype=np.float64))
    if update_first:
        custom(m, end)


def type_text(text: W.Text, value: str) -> None:
    update(text, value=value)


# -- learners ------------------------------------------------------------------------------------------


def make_learn(seed: int = 0, bs: int = 64, two_groups: bool = False, loss_func=None) -> Learner:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    splitter = (lambda m: [list(m[0].parameters()), list(m[2].parameters())]) if two_groups else None
    return Learner(
        digits(bs=bs, seed=seed), model, metrics=accuracy, splitter=splitter, loss_func=loss_func, device="cpu"
    )


class Record(Observer):
    """Records what the training thread sees: runs started, per-layer-group lrs, button states."""

    def __init__(self, w: LRWidget | None = None):
        self.w, self.starts, self.lrs, self.buttons = w, 0, [], set()

    def fit_start(self, learn):
        self.starts += 1

    def batch_end(self, learn):
        self.lrs.append([lr for _, lr in sorted({g["layer_group"]: g["lr"] for g in learn.opt.param_groups}.items())])
        if self.w is not None:
            self.buttons.add(
                (self.w.busy, self.w.find_button.disabled, self.w.fit_button.disabled, self.w.stop_button.disabled)
            )


def weights(learn: Learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def wait_for(cond, timeout: float = TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.0005)


@pytest.fixture
def learn() -> Learner:
    return make_learn()


@pytest.fixture
def w(learn) -> LRWidget:
    widget = LRWidget(learn, epochs=1)
    yield widget
    widget.stop()
    with contextlib.suppress(Exception):  # a test's own error was raised by its own wait()
        widget.wait(TIMEOUT)


@pytest.fixture
def found(w) -> LRWidget:
    assert w.find()
    w.wait(TIMEOUT)
    return w


# -- binding: markers <-> traitlets <-> fields -----------------------------------------------------------


def test_is_a_displayable_vbox_with_the_public_surface(w):
    assert isinstance(w, W.VBox) and w.chart in widget_tree(w)
    assert isinstance(w.chart, bq.Figure)
    assert all(isinstance(b, W.Button) for b in (w.find_button, w.fit_button, w.stop_button))
    assert (w.lr_min, w.lr_steep, w.epochs, w.busy) == (1e-4, 1e-2, 1, False)
    assert "Find LR" in w.status
    for name in ("lr_min", "lr_steep"):
        m = w.markers[name]
        assert m in w.chart.marks and m.enable_move and m.restrict_x and len(m.x) == 1


def test_drag_each_marker_sets_its_traitlet(w):
    markers = w.chart_view.markers  # the Marker behind each handle: its line and label
    drag(w, "lr_min", 3.3e-4, drop=False)
    assert w.lr_min == 1e-4, "the value is taken on drop, not while dragging"
    assert markers["lr_min"].line.x.tolist() == [3.3e-4, 3.3e-4], "the line follows the handle while dragging"
    drag(w, "lr_min", 3.3e-4)
    drag(w, "lr_steep", 0.0456789, update_first=False)
    assert (w.lr_min, w.lr_steep) == (3.3e-4, 0.0456789)
    assert w.markers.texts["lr_min"].value == "0.00033" and w.markers.texts["lr_steep"].value == "0.0456789"
    assert markers["lr_steep"].line.x.tolist() == [0.0456789, 0.0456789]
    assert "0.0457" in markers["lr_steep"].label.text[0]


def test_drag_out_of_the_curve_is_clamped_into_its_lr_range(found):
    lo, hi = found.chart_view.lr_range
    drag(found, "lr_steep", hi * 100)
    assert found.lr_steep == hi and found.markers["lr_steep"].x.tolist() == [hi]
    drag(found, "lr_min", lo / 100)
    assert found.lr_min == lo and found.markers["lr_min"].x.tolist() == [lo]


def test_setting_traitlets_moves_markers_lines_labels_and_fields(w):
    w.lr_min, w.lr_steep = 2e-3, 5e-2
    for name, v in (("lr_min", 2e-3), ("lr_steep", 5e-2)):
        mk = w.chart_view.markers[name]
        assert mk.handle.x.tolist() == [v] and mk.line.x.tolist() == [v, v]
        assert f"{v:.3g}" in mk.label.text[0] and float(w.markers.texts[name].value) == v


def test_typed_values_set_the_traitlets(w):
    type_text(w.markers.texts["lr_steep"], "3e-2")
    type_text(w.markers.texts["lr_min"], " 0.002 ")
    assert (w.lr_min, w.lr_steep) == (0.002, 0.03)
    assert w.markers["lr_min"].x.tolist() == [0.002]


@pytest.mark.parametrize("bad", ["abc", "-1", "0", "nan", "inf", "", "1e-3x"])
def test_refused_typed_text_keeps_the_old_value_and_says_so(w, bad):
    w.lr_min = 2e-4
    type_text(w.markers.texts["lr_min"], bad)
    assert w.lr_min == 2e-4
    assert w.markers.texts["lr_min"].value == "0.0002", "the field shows the kept value again"
    assert "refused" in w.status and repr(bad) in w.status and "positive finite" in w.status


@pytest.mark.parametrize("bad", [-1, 0, 0.0, math.nan, math.inf, -math.inf])
def test_setting_a_bad_lr_from_code_raises_traiterror(w, bad):
    with pytest.raises(traitlets.TraitError, match="positive finite"):
        w.lr_min = bad
    with pytest.raises(traitlets.TraitError, match=repr(bad).replace("(", r"\(")):
        w.lr_steep = bad
    assert (w.lr_min, w.lr_steep) == (1e-4, 1e-2)
    with pytest.raises(traitlets.TraitError):
        w.epochs = 0


def test_values_are_plain_python_floats(w):
    w.lr_min = np.float64(3e-4)
    assert type(w.lr_min) is float
    for v in (np.float32(5e-4), np.int64(1), torch.tensor(2e-3), np.array(3e-3), 1):
        w.lr_steep = v
        assert type(w.lr_steep) is float and w.lr_steep == pytest.approx(float(v))


@pytest.mark.parametrize("bad", [True, "1e-3", None, torch.tensor([1e-3, 2e-3]), [1e-3]])
def test_a_bool_text_or_several_numbers_is_not_a_learning_rate(w, bad):
    with pytest.raises(traitlets.TraitError, match="expected a float"):
        w.lr_min = bad
    assert w.lr_min == 1e-4


@pytest.mark.parametrize("bad", [0, -1, True, 1_000_001])
def test_epochs_beyond_the_fields_range_are_refused(w, bad):
    with pytest.raises(traitlets.TraitError, match=r"epochs must be a whole number from 1 to 1,000,000"):
        w.epochs = bad
    assert w.epochs == 1 and w.controls.epochs_box.value == 1
    w.epochs = 1_000_000
    assert w.controls.epochs_box.value == 1_000_000


def test_dragging_past_the_other_marker_pushes_it(w):
    drag(w, "lr_min", 0.05)
    assert w.lr_min == w.lr_steep == 0.05
    assert "lr_steep pushed up" in w.status
    assert w.markers["lr_steep"].x.tolist() == [0.05] and w.markers.texts["lr_steep"].value == "0.05"
    drag(w, "lr_steep", 1e-5)
    assert w.lr_min == w.lr_steep == 1e-5
    assert "lr_min pushed down" in w.status


def test_pair_assignment_works_in_either_order(w):
    w.lr_min, w.lr_steep = 0.5, 0.7  # both above the old lr_steep
    assert (w.lr_min, w.lr_steep) == (0.5, 0.7)
    w.lr_min, w.lr_steep = 1e-6, 2e-6  # both below the old lr_min
    assert (w.lr_min, w.lr_steep) == (1e-6, 2e-6)


# -- lr_find ---------------------------------------------------------------------------------------------


def test_find_puts_markers_on_the_suggestions_and_draws_the_curve(w, learn):
    click(w.find_button)
    w.wait(TIMEOUT)
    res = learn.recorder.lr_find_result
    assert w.result is res and res.lr_min <= res.lr_steep
    assert (w.lr_min, w.lr_steep) == (res.lr_min, res.lr_steep)
    assert w.markers["lr_min"].x.tolist() == [res.lr_min]
    assert w.code == "learn.lr_find(start_lr=1e-07, end_lr=10.0, num_it=100)"
    assert w.code in w.code_html.value and "lr_find done" in w.status
    cv = w.chart_view
    n = len(res.lrs) - 5
    assert np.array_equal(cv.smooth.x, res.lrs[:n]) and np.array_equal(cv.smooth.y, res.losses[:n])
    assert np.array_equal(cv.raw.y, res.raw_losses[:n])
    assert cv.lr_range == (res.lrs[0], res.lrs[n - 1])
    assert isinstance(cv.sx, bq.LogScale)
    assert sorted(cv.point_keys) == sorted(k for k, v in res.suggestions.items() if v is not None)
    assert [str(s).split()[0] for s in cv.points.names] == cv.point_keys


def test_find_passes_suggest_funcs_and_writes_them_by_name(w, learn):
    from lrwidget.core.suggest import slide, valley

    assert w.find(suggest_funcs=(valley, slide))
    w.wait(TIMEOUT)
    assert w.code == "learn.lr_find(start_lr=1e-07, end_lr=10.0, num_it=100, suggest_funcs=(valley, slide))"
    res = learn.recorder.lr_find_result
    assert list(res) == [res.valley, res.slide] and (w.lr_min, w.lr_steep) == (res.lr_min, res.lr_steep)

    def half_valley(lrs, losses, num_it):  # a function of the user's: drawn too
        return valley(lrs.numpy(), losses.numpy())[0] / 2, None

    assert w.find(suggest_funcs=half_valley)
    w.wait(TIMEOUT)
    assert "suggest_funcs=half_valley)" in w.code and "half_valley" in w.chart_view.point_keys


def test_find_options_are_passed_and_shown_in_code(w, learn):
    type_text(w.controls.start_text, "1e-5")
    assert w.find(num_it=50, end_lr=1)
    w.wait(TIMEOUT)
    assert w.code == "learn.lr_find(start_lr=1e-05, end_lr=1, num_it=50)"
    assert learn.recorder.lr_find_result.lrs[0] == pytest.approx(1e-5)
    assert w.controls.steps_box.value == 50 and w.controls.end_text.value == "1"


def test_find_with_refused_start_does_not_run(w):
    type_text(w.controls.start_text, "abc")
    assert not w.find()
    assert not w.busy and w.learn.run is None and "refused start_lr" in w.status


def test_a_reversed_range_from_code_fails_in_the_widget_and_leaves_the_fields(w):
    assert w.find(start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="start_lr must be below end_lr"):
        w.wait(TIMEOUT)
    assert (w.controls.start_text.value, w.controls.end_text.value) == ("1e-07", "10"), (
        "the next click runs the fields' range"
    )
    assert w.find()
    w.wait(TIMEOUT)
    assert w.result.end_reason in ("completed", "diverged")


def test_a_curve_without_suggestions_says_why_once(w, learn):
    learn.loss_func = lambda out, y: (out * 0).sum() + 1.0  # flat: no suggestion at all
    assert w.find(num_it=20)
    w.wait(TIMEOUT)
    assert (w.lr_min, w.lr_steep) == (1e-4, 1e-2)
    assert w.status.startswith("lr_find done") and "(20 steps, completed)" in w.status
    assert "markers not moved" in w.status and "no suggestion" in w.status
    assert w.status.count("the loss is flat") == 1


def reversed_lr_find(learn, **changes):
    real = learn.lr_find

    def fake(**kw):
        return real(**kw)._replace(**changes)

    return fake


def test_reversed_suggestions_are_swapped_and_reported(w, learn, monkeypatch):
    monkeypatch.setattr(learn, "lr_find", reversed_lr_find(learn, lr_min=0.03, lr_steep=0.002))
    assert w.find()
    w.wait(TIMEOUT)
    assert (w.lr_min, w.lr_steep) == (0.002, 0.03)
    assert "reversed" in w.status and "swapped" in w.status
    assert "pushed" not in w.status


def test_a_missing_suggestion_falls_back_and_says_so(w, learn, monkeypatch):
    monkeypatch.setattr(learn, "lr_find", reversed_lr_find(learn, lr_min=None, valley=0.004, lr_steep=0.02))
    assert w.find()
    w.wait(TIMEOUT)
    assert (w.lr_min, w.lr_steep) == (0.004, 0.02)
    assert "no lr_min suggestion" in w.status and "valley" in w.status


def test_widget_starts_at_the_last_lr_find_result(learn):
    res = learn.lr_find(show_plot=False)
    w = LRWidget(learn)
    assert (w.lr_min, w.lr_steep) == (min(res), max(res))
    assert np.array_equal(w.chart_view.smooth.x, res.lrs[:-5])


def test_clicking_a_suggestion_snaps_the_nearest_marker(found):
    res = found.result
    keys = found.chart_view.point_keys
    i = keys.index("valley")
    v = res.valley
    found.lr_min, found.lr_steep = v * 0.5, v * 100
    custom(
        found.chart_view.points,
        {"event": "element_click", "data": {"x": v, "y": 1.0, "index": i, "name": found.chart_view.points.names[i]}},
    )
    assert found.lr_min == v and found.lr_steep == v * 100
    assert "lr_min snapped to valley" in found.status


def test_snap_menu_moves_a_marker_to_a_suggestion(found):
    res = found.result
    labels = [label for label, _ in found.markers.snap_menu.options]
    idx = [i for i, (_, val) in enumerate(found.markers.snap_menu.options) if val == ("lr_steep", "slide")][0]
    found.lr_min = found.lr_steep = 1e-6
    update(found.markers.snap_menu, index=idx)
    assert found.lr_steep == res.slide and found.lr_min == 1e-6
    assert (
        found.markers.snap_menu.index == 0 and "snapped" in found.status and "slide" in labels[idx]
    )  # the prompt again
    with pytest.raises(ValueError):
        found.snap("lr_min", "nonsense")


def test_stop_during_lr_find_leaves_the_weights_as_they_were(w, learn):
    before = weights(learn)
    opt_before = copy.deepcopy(learn.opt.state_dict())
    lr_before = (w.lr_min, w.lr_steep)
    assert w.find(num_it=20000, end_lr=1e-2)
    wait_for(lambda: learn.recorder.n_batches >= 5)
    click(w.stop_button)
    w.wait(TIMEOUT)
    assert learn.run.end_reason == "stopped" and learn.recorder.n_batches < 20000
    assert same(weights(learn), before)
    assert learn.opt.state_dict()["state"] == opt_before["state"]
    assert (w.lr_min, w.lr_steep) == lr_before and "lr_find stopped" in w.status
    assert w.chart_view.lr_range == (1e-7, 1e-2), "a stopped curve keeps the planned lr range to drag in"


# -- fit ---------------------------------------------------------------------------------------------------


def test_fit_trains_with_the_dragged_values():
    learn = make_learn(two_groups=True)
    w = LRWidget(learn, epochs=2)
    a, b = 0.0012345678901234567, 0.031234567890123456
    drag(w, "lr_steep", b)
    drag(w, "lr_min", a)
    rec = Record()
    learn.observers.append(rec)
    click(w.fit_button)
    w.wait(TIMEOUT)
    assert len(learn.dls.train) * 2 % 4 == 0, "the one-cycle peak falls on a batch"
    peaks = np.max(np.array(rec.lrs), axis=0)
    assert peaks[0] == pytest.approx(a, rel=1e-12) and peaks[1] == pytest.approx(b, rel=1e-12)
    assert max(learn.recorder.lrs) == pytest.approx(b, rel=1e-12)
    assert w.code == f"learn.fit_one_cycle(2, lr_max=slice({a!r}, {b!r}))"
    assert "fit done" in w.status and learn.run.end_reason == "completed"


def test_code_reproduces_the_widgets_fit_bit_for_bit(w, learn):
    assert w.find()
    w.wait(TIMEOUT)
    a = 0.0013182567385564073
    drag(w, "lr_min", a)
    start = weights(learn)
    assert w.fit(2)
    w.wait(TIMEOUT)
    trained = weights(learn)
    assert not same(trained, start)
    assert w.code.startswith(f"learn.fit_one_cycle(2, lr_max=slice({a!r}, ") and len(repr(a)) > 15
    fresh = make_learn()
    exec(w.code, {"learn": fresh})
    assert same(weights(fresh), trained)
    other = make_learn()
    other.fit_one_cycle(2, lr_max=slice(a, float(f"{w.lr_steep:.4g}")))
    assert not same(weights(other), trained), "rounded values give other weights: the full precision matters"


def test_double_click_runs_once_and_buttons_are_disabled_while_busy(w, learn):
    rec = Record(w)
    learn.observers.append(rec)
    click(w.fit_button)
    click(w.fit_button)
    click(w.find_button)
    assert w.busy and not w.fit() and not w.find()
    w.wait(TIMEOUT)
    assert rec.starts == 1
    assert rec.buttons == {(True, True, True, False)}
    assert (w.busy, w.find_button.disabled, w.fit_button.disabled, w.stop_button.disabled) == (
        False,
        False,
        False,
        True,
    )
    click(w.fit_button)
    w.wait(TIMEOUT)
    assert rec.starts == 2


def test_stop_ends_a_fit_within_a_batch_or_two_and_keeps_the_weights(w, learn):
    start = weights(learn)
    assert w.fit(200)
    wait_for(lambda: learn.recorder.n_batches >= 5)
    click(w.stop_button)
    n0 = learn.recorder.n_batches
    w.wait(TIMEOUT)
    assert learn.run.end_reason == "stopped"
    assert learn.recorder.n_batches - n0 <= 2
    assert not same(weights(learn), start)
    assert "fit stopped" in w.status and not w.busy


def test_a_stop_after_the_last_batch_says_the_last_epoch_has_no_validation(w, learn):
    class StopAtLastBatch(Observer):
        def batch_end(self, learn):
            if learn.recorder.n_batches == learn.run.total:
                w.stop()

    learn.observers.append(StopAtLastBatch())
    assert w.fit(2)
    w.wait(TIMEOUT)
    n = 2 * len(learn.dls.train)
    assert learn.run.end_reason == "stopped" and learn.recorder.n_batches == n and len(learn.recorder.values) == 1
    assert "fit stopped" in w.status and "last validation" in w.status and f"all {n} batches" in w.status
    assert "no validation row" in w.status and re.search(r"\b1 full epoch\b", w.status)
    assert "weights keep the training" in w.status


@pytest.mark.parametrize("kind", ["fit", "find"])
def test_stop_right_after_start_is_not_lost(w, learn, kind):
    before = weights(learn)
    assert w.fit(200) if kind == "fit" else w.find(num_it=20000, end_lr=1e-2)
    w.stop()
    w.wait(TIMEOUT)
    assert w.learn.run.end_reason == "stopped" and w.learn.recorder.n_batches <= 2
    assert "stopped" in w.status and not w.busy
    if kind == "find":
        assert same(weights(learn), before)


def test_live_charts_and_epoch_table_after_a_fit(found, learn):
    curve_x = found.chart_view.smooth.x.copy()
    assert found.fit(3)
    found.wait(TIMEOUT)
    rec = learn.recorder
    n = rec.n_batches
    assert n == 3 * len(learn.dls.train)
    assert np.array_equal(found.loss_chart.train.x, np.arange(n)) and len(found.loss_chart.train.y) == n
    assert np.array_equal(found.loss_chart.valid.y, [v[1] for v in rec.values]) and len(found.loss_chart.valid.x) == 3
    assert np.array_equal(found.training.sched_chart.lr.y, rec.lrs) and len(found.training.sched_chart.mom.y) == n
    sched = found.training.sched_chart
    assert len(sched.lr_plan.y) == n and sched.lr_plan.y[-1] == pytest.approx(rec.lrs[-1]), "the planned cycle, whole"
    assert np.allclose(sched.lr_plan.y, rec.lrs) and np.allclose(sched.mom_plan.y, rec.moms), "as it then ran"
    table = found.table_html.value
    assert table.count("<tr>") == 1 + 3
    assert all(f">{c}</th>" in table for c in rec.metric_names)
    assert found.progress.value == n == found.progress.max and "elapsed" in found.progress_label.value
    assert found.training.train_box.layout.display == ""
    charts, box = found.training.train_box.children
    assert box.children == (found.table_html,) and charts.children[:2] == (found.loss_chart.figure, sched.figure)
    assert np.array_equal(found.chart_view.smooth.x, curve_x), "the lr_find chart keeps the lr_find curve"


def test_the_training_charts_are_not_drawn_while_hidden(w):
    """bqplot draws a figure in a display:none box at zero width and logs SVG errors (negative widths)."""
    figures = (w.loss_chart.figure, w.training.sched_chart.figure)
    box = w.training.train_box
    assert box.layout.display == "none" and box.children == (w.training.table_box,)
    assert not any(f in widget_tree(w) for f in figures), "no chart is in the widget's tree while hidden"
    assert w.runs_panel.layout.display == "none" and w.runs_panel.chart.figure not in widget_tree(w)
    assert w.fit(1)
    w.wait(TIMEOUT)
    assert box.layout.display == "" and box.children[1] is w.training.table_box
    assert len(box.children) == 2 and box.children[0].children[:2] == figures
    assert w.runs_panel.layout.display == "" and w.runs_panel.chart.figure in widget_tree(w)


def test_a_second_widget_or_a_cell_cannot_run_on_a_busy_learner(w, learn):
    gate, release = __import__("threading").Event(), __import__("threading").Event()

    class Hold(Observer):
        def batch_end(self, learn):
            gate.set()
            release.wait(TIMEOUT)

    learn.observers.append(Hold())
    assert w.fit(1)
    assert gate.wait(TIMEOUT) and learn.busy
    other = LRWidget(learn)
    assert not other.find() and not other.fit() and not other.busy
    assert "the learner is busy with another run" in other.status
    for call in (learn.lr_find, lambda: learn.fit(1), learn.validate, lambda: learn.fine_tune(1)):
        with pytest.raises(
            RuntimeError,
            match=r"busy with fit_one_cycle\b.*cannot start.*wait for it to end.*learn\.stop\(\)",
        ):
            call()
    learn.observers.pop()
    release.set()
    w.wait(TIMEOUT)
    assert w.learn.run.end_reason == "completed" and not learn.busy and len(learn.recorder.values) == 1
    assert other.find()
    other.wait(TIMEOUT)


def test_closing_the_widget_stops_its_run_and_closes_its_parts(learn):
    w = LRWidget(learn, epochs=50)
    parts = [x for x in (w.chart, w.markers["lr_min"], w.fit_button, w.loss_chart.figure, w.progress)]
    assert w.fit()
    wait_for(lambda: learn.recorder.n_batches > 0)
    w.close()
    w.wait(TIMEOUT)
    assert learn.run.end_reason == "stopped" and not learn.busy
    assert w.comm is None and all(p.comm is None for p in parts)


def test_redraws_are_throttled_and_long_arrays_downsampled():
    learn = make_learn(bs=8)
    w = LRWidget(learn)
    epochs = 6
    t = time.monotonic()
    assert w.fit(epochs)
    w.wait(TIMEOUT)
    elapsed = time.monotonic() - t
    n = learn.recorder.n_batches
    assert n > 1000
    # the rule is at most ~10 a second, whatever the machine's speed (a busy one runs fewer batches a second)
    assert 2 <= w.live.redraws <= elapsed * 10 + 3
    x = w.loss_chart.train.x
    assert len(x) == 1000 and x[0] == 0 and x[-1] == n - 1
    assert len(w.training.sched_chart.lr.x) == 1000


# -- errors ------------------------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_an_error_in_the_loss_reaches_status_and_wait():
    calls = []

    def bad_loss(out, y):
        calls.append(1)
        if len(calls) > 3:
            raise Boom("the loss blew up")
        return nn.functional.cross_entropy(out, y)

    learn = make_learn(loss_func=bad_loss)
    w = LRWidget(learn)
    click(w.fit_button)
    with pytest.raises(Boom, match="the loss blew up") as err:
        w.wait(TIMEOUT)
    with pytest.raises(Boom) as again:
        w.wait(TIMEOUT)
    assert again.value is err.value, "the worker's own exception, not a copy"
    assert w.status.startswith("error") and "Boom" in w.status and "the loss blew up" in w.status
    assert w.error_box.layout.display == "" and "the loss blew up" in w.messages.error_html.value
    assert "bad_loss" in w.traceback_html.value and "Traceback" in w.traceback_html.value
    assert not w.busy and not w.fit_button.disabled and learn.observers == [], "the widget's observer is removed"
    with pytest.raises(Boom):
        w.wait(TIMEOUT)
    learn.loss_func = nn.CrossEntropyLoss()
    assert w.fit()
    w.wait(TIMEOUT)
    assert w.error_box.layout.display == "none" and "fit done" in w.status


# -- figures shared with the recorder ----------------------------------------------------------------------


def test_recorder_plots_are_bqplot_figures(learn):
    res = learn.lr_find(show_plot=False)
    fig = learn.recorder.plot_lr_find()
    assert isinstance(fig, bq.Figure) and isinstance(fig.axes[0].scale, bq.LogScale)
    assert fig.axes[0].label.startswith("learning rate") and fig.axes[1].label == "loss"
    lines = [m for m in fig.marks if isinstance(m, bq.Lines)]
    assert len(lines) == 2 and all(len(m.x) == len(res.lrs) - 5 for m in lines)
    raw, smooth = lines
    assert raw.colors == [var("raw")] and smooth.colors == [var("curve")] and raw.stroke_width < smooth.stroke_width
    for light, dark in (COLORS["raw"], COLORS["curve"]):  # the raw loss is fainter, in both themes
        assert lum(light) > lum(COLORS["curve"][0]) or light == COLORS["curve"][0]
        assert lum(dark) < lum(COLORS["curve"][1]) or dark == COLORS["curve"][1]
    pts = [m for m in fig.marks if isinstance(m, bq.Scatter)][0]
    assert pts.display_names and len(pts.names) == len(pts.x) == sum(v is not None for v in res.suggestions.values())
    learn.fit_one_cycle(1, lr_max=1e-2)
    loss, sched = learn.recorder.plot_loss(), learn.recorder.plot_sched()
    assert isinstance(loss, bq.Figure) and len(loss.marks[0].x) == len(learn.dls.train) - 5
    assert len(loss.marks[1].y) == 1
    assert isinstance(sched, bq.Figure) and len(sched.marks[0].y) == len(learn.dls.train)


def test_recorder_plots_take_fastais_arguments(learn):
    res = learn.lr_find(show_plot=False)
    fig = learn.recorder.plot_lr_find(suggestions=[res.valley, res.slide], nms=["valley", "slide"])
    pts = next(m for m in fig.marks if isinstance(m, bq.Scatter))
    assert list(pts.x) == [res.valley, res.slide] and [str(n).split()[0] for n in pts.names] == ["valley", "slide"]
    assert learn.recorder.plot_lr_find(return_fig=False) is None
    with pytest.raises(ValueError, match=r"nms names 1\b.*suggestions holds 2\b"):
        learn.recorder.plot_lr_find(suggestions=[1e-3, 1e-2], nms=["one"])
    learn.fit_one_cycle(2, lr_max=1e-2)
    fig = learn.recorder.plot_loss(log=True, show_epochs=True)
    assert isinstance(fig.axes[1].scale, bq.LogScale)
    epochs = fig.marks[0]
    assert np.array_equal(np.asarray(epochs.x)[:, 0], np.asarray(learn.recorder.iters) - 1)
    lr_only = learn.recorder.plot_sched(keys=["lr"])
    assert [m.labels[0] for m in lr_only.marks] == ["lr"] and len(lr_only.axes) == 2
    assert [m.labels[0] for m in learn.recorder.plot_sched().marks] == ["lr", "momentum"]
    with pytest.raises(ValueError, match=r"plot_sched's keys are \['lr', 'mom'\].*got \['beta'\]"):
        learn.recorder.plot_sched(keys=["beta"])


def test_plot_loss_draws_an_infinite_loss_as_a_gap_not_an_infinite_axis():
    from lrwidget.core.recorder import Recorder
    from lrwidget.widget.charts import LossChart

    rec = Recorder()
    for v in [2.0, 1.5, math.inf, 1.0, 0.9]:
        rec.add_batch(torch.tensor(v), 1e-3, None)
    chart = LossChart(skip_start=0)
    chart.update(rec)
    y = np.asarray(chart.train.y, dtype=float)
    assert np.isinf(rec.losses).any(), "the smoothed loss itself is infinite from the inf on"
    assert not np.isinf(y).any() and np.isnan(y[2:]).all() and np.array_equal(y[:2], rec.losses[:2])


# -- what the widget drives, and its threads ---------------------------------------------------------------------


class Thin:
    """Only what lrwidget.core.interface.Driven names, over a Learner: the widget needs nothing more."""

    lr_find_code_args = ""
    lr_find_restores = "the thin learner restored it"
    note = ""
    accum_steps = 1

    def __init__(self, learn: Learner):
        self._learn = learn

    observers = property(lambda self: self._learn.observers)
    run = property(lambda self: self._learn.run)
    recorder = property(lambda self: self._learn.recorder)
    guard = property(lambda self: self._learn.guard)
    busy = property(lambda self: self._learn.busy)

    def stop(self):
        self._learn.stop()

    def lr_find(
        self, start_lr=1e-7, end_lr=10, num_it=100, stop_div=True, show_plot=True, suggest_funcs=None, repeats=1
    ):
        return self._learn.lr_find(start_lr, end_lr, num_it, stop_div, show_plot, suggest_funcs, repeats)

    def fit_one_cycle(self, n_epoch, lr_max=None):
        self._learn.fit_one_cycle(n_epoch, lr_max)

    def lr_search(self, epochs=5, budget=1.5, **options):
        return self._learn.lr_search(epochs, budget, **options)

    def take_state(self):
        return self._learn.take_state()

    def restore_state(self, saved):
        self._learn.restore_state(saved)


def test_the_widget_drives_anything_with_the_written_interface(learn):
    from lrwidget.core.interface import Driven

    assert isinstance(learn, Driven) and isinstance(Thin(learn), Driven)
    w = LRWidget(Thin(learn))
    assert w.find(num_it=30)
    w.wait(TIMEOUT)
    assert w.result is learn.recorder.lr_find_result and "lr_find done (30 steps" in w.status
    assert w.fit(1)
    w.wait(TIMEOUT)
    assert w.status.startswith("fit done: 1 epochs") and len(learn.recorder.values) == 1
    assert w.find(num_it=20000, end_lr=1e-2)
    w.stop()
    w.wait(TIMEOUT)
    assert "the thin learner restored it" in w.status
    with pytest.raises(TypeError, match=r"lrwidget Learner or a fastai Learner.*got Sequential.*Learner\(dls, model"):
        LRWidget(learn.model)


def test_worker_updates_and_kernel_handlers_never_interleave(w, learn):
    import threading

    inside, overlaps, calls = [], [], {"worker": 0, "kernel": 0}

    def exclusive(f, who):
        def g(*a, **k):
            me = threading.get_ident()
            if any(t != me for t in inside):
                overlaps.append(who)
            inside.append(me)
            calls[who] += 1
            try:
                time.sleep(0.003)  # widen the window in which an unguarded update from the other thread would land
                return f(*a, **k)
            finally:
                inside.remove(me)

        return g

    w.chart_view.show_curve = exclusive(w.chart_view.show_curve, "worker")  # the worker draws the growing curve
    for m in w.chart_view.markers.values():
        m.move = exclusive(m.move, "kernel")  # a drag or a typed value places a marker
    assert w.find(num_it=20000, end_lr=1e-2)
    wait_for(lambda: learn.recorder.n_batches > 0)
    i = 0
    while calls["worker"] < 5 or calls["kernel"] < 20:  # until both threads have updated the view often enough
        assert w.busy, "the range test ended before the worker drew 5 times"
        i += 1
        drag(w, "lr_min", 1e-5 * (1 + i % 7))
        type_text(w.markers.texts["lr_steep"], f"{1e-3 * (1 + i % 5):g}")
    w.stop()
    w.wait(TIMEOUT)
    assert calls["worker"] >= 5 and calls["kernel"] >= 20, calls
    assert overlaps == [], f"{len(overlaps)} updates interleaved"


def test_an_out_of_memory_error_shows_its_type_message_and_hint(learn):
    def oom(out, y):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    learn.loss_func = oom
    w = LRWidget(learn)
    assert w.fit(1)
    with pytest.raises(torch.OutOfMemoryError, match="Tried to allocate"):
        w.wait(TIMEOUT)
    assert w.status.startswith("error") and "OutOfMemoryError" in w.status and "Tried to allocate 2.00 GiB" in w.status
    assert "smaller batch size" in w.status and "mixed_precision" in w.messages.error_html.value
    learn.loss_func = nn.CrossEntropyLoss()


# -- seen in a browser: a long epoch table, an empty snap menu, the marker labels over each other ------------


def test_the_epoch_table_scrolls_in_a_box_of_about_ten_rows_that_stays_as_rows_are_added(w):
    from lrwidget.widget.training import ROW_PX, epoch_table

    names = ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    table = epoch_table(names, [[1.0 / (i + 1), 0.5, 0.9] for i in range(30)], [1.0] * 30)
    assert table.count("<tr>") == 1 + 30 and all(f">{c}</th>" in table for c in names)
    assert re.findall(r"<tr><td[^>]*>(\d+)</td>", table) == [str(i) for i in range(30)], "the newest row is last"
    assert table.count("position:sticky;top:0") == len(names), "the header stays in view as the rows scroll"
    # the box that scrolls is a widget of its own, not part of the table's HTML: redrawing the table keeps where the
    # user scrolled it (a column-reverse box sits at the newest row, unless scrolled up)
    box = w.training.table_box
    # ipywidgets keeps a widget's CSS classes in `_dom_classes`, with add_class/remove_class and no public getter
    assert box.children == (w.table_html,) and "lrwidget-epochs" in box._dom_classes
    assert 9 <= int(box.layout.max_height.removesuffix("px")) / ROW_PX <= 12, "about 10 rows and the header"
    assert "flex-direction: column-reverse" in CSS and ".lrwidget-epochs" in CSS


def test_the_snap_menu_shows_its_prompt_and_is_off_until_there_are_suggestions(w, learn):
    from lrwidget.widget.markers import SNAP_PROMPT

    menu = w.markers.snap_menu
    assert menu.disabled and menu.label == SNAP_PROMPT and menu.value == SNAP_PROMPT
    assert menu.get_state()["index"] == 0, "the browser is told to show the prompt (no index: an empty box)"
    assert w.find()
    w.wait(TIMEOUT)
    assert not menu.disabled and menu.label == SNAP_PROMPT and len(menu.options) > 1
    idx = [i for i, (_, val) in enumerate(menu.options) if val == ("lr_min", "valley")][0]
    w.lr_min, w.lr_steep = 1e-7, 9.0
    update(menu, index=idx)
    assert w.lr_min == w.result.valley and w.lr_steep == 9.0 and "lr_min snapped to valley" in w.status
    assert menu.label == SNAP_PROMPT and menu.get_state()["index"] == 0 and not menu.disabled
    learn.loss_func = lambda out, y: (out * 0).sum() + 1.0  # flat: no suggestion at all
    assert w.find(num_it=20)
    w.wait(TIMEOUT)
    assert menu.disabled and menu.label == SNAP_PROMPT and len(menu.options) == 1


def test_a_markers_label_lies_toward_the_middle_and_says_when_it_is_beyond_the_chart(found):
    labels = {n: m.label for n, m in found.chart_view.markers.items()}
    lo, hi = found.chart_view.lr_range
    found.lr_min, found.lr_steep = lo * 1.01, hi / 1.01  # at both ends: neither label runs off the chart
    assert (labels["lr_min"].align, labels["lr_steep"].align) == ("start", "end"), "lr_min's right, lr_steep's left"
    assert labels["lr_min"].x_offset > 0 > labels["lr_steep"].x_offset
    assert labels["lr_min"].y[0] != labels["lr_steep"].y[0], "at different heights: two labels never cover each other"
    found.lr_steep = 100.0  # beyond the chart: drawn at its end, its label says the value and points off the chart
    m = found.chart_view.markers["lr_steep"]
    assert m.handle.x.tolist() == [hi] and m.line.x.tolist() == [hi, hi]
    assert labels["lr_steep"].text[0] == "lr_steep 100 →" and labels["lr_steep"].align == "end"
    assert f"lr_steep is beyond the chart's right end ({hi:.3g})" in found.status
    found.lr_min = lo / 100
    assert labels["lr_min"].text[0] == f"← lr_min {lo / 100:.3g}" and labels["lr_min"].align == "start"
    assert found.markers["lr_steep"].tooltip is None, "no tooltip: it showed the value where a drag began"


def test_the_status_says_the_markers_as_they_are_now(found):
    drag(found, "lr_steep", 0.05)
    assert found.status.startswith("markers at lr_min=") and "lr_steep=0.05" in found.status
    type_text(found.markers.texts["lr_min"], "0.002")
    assert "markers at lr_min=0.002, lr_steep=0.05" in found.status, "a typed value: no stale 'markers at' left"
    found.lr_min, found.lr_steep = 0.5, 100.0  # the first pushes lr_steep up to 0.5, the second moves it on
    assert "pushed" not in found.status and "lr_steep=100" in found.status, "no stale push note"
    found.lr_min, found.lr_steep = 1e-3, 1e-3
    found.lr_min = 2e-3
    assert "lr_steep pushed up to 0.002 with lr_min" in found.status, "a push is said while it holds"
    found.snap("lr_min", "valley")
    assert found.status.startswith("lr_min snapped to valley") and "lr_min is lr_find's valley" in found.status


def contrast(a: str, b: str) -> float:
    x, y = sorted((lum(a), lum(b)))
    return (y + 0.05) / (x + 0.05)


def test_the_palettes_read_on_white_and_on_jupyterlabs_dark_background():
    from lrwidget.widget.style import BUTTONS, PALETTE, mix

    graphics = ("raw", "earlier")  # lines, fainter on purpose; every other role is also the colour of a text
    for role, (light, dark) in COLORS.items():
        need = 2.5 if role in graphics else 4.5
        assert contrast(light, "#ffffff") >= need and contrast(dark, "#111111") >= need, role
    for c in [*PALETTE, *(mix(t / 10) for t in range(11))]:  # lines and swatches: one palette for both themes
        assert contrast(c, "#ffffff") >= 3 and contrast(c, "#111111") >= 3, c
    assert all(contrast("#ffffff", bg) >= 4.5 for bg in BUTTONS.values())
