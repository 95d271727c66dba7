"""LRWidget over a fastai Learner: fastai's own lr_find and fit_one_cycle, driven through the widget's comms.

fastai is a test dependency: these tests run (never skip) wherever the test extra is installed.
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import weakref

import fastai
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import minimum, slide, steep, valley
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy

# w (the widget fixture) and the shared tests run here over this module's fastai learn
from test_widget import click, drag, same, test_stop_right_after_start_is_not_lost, w, wait_for, weights  # noqa: F401
from torch import nn

from lrwidget import Learner as OurLearner
from lrwidget import LRWidget
from lrwidget.core.recorder import smooth
from lrwidget.data import digits
from lrwidget.integrations.fastai_adapter import FastaiLearner, is_fastai_learner

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TIMEOUT = 60
FIND_CODE = "learn.lr_find(start_lr=1e-07, end_lr=10.0, num_it=100, suggest_funcs=(minimum, steep, valley, slide))"


def fastai_dls(bs: int = 64, seed: int = 0) -> DataLoaders:
    """The built-in digits, as fastai DataLoaders over lists of (x, y) pairs: offline and fast."""
    d = digits(bs=bs, seed=seed)
    xt, yt = d.train.dataset.tensors
    xv, yv = d.valid.dataset.tensors
    random.seed(seed)  # fastai's DataLoader seeds its shuffling from `random`
    return DataLoaders(
        DataLoader(list(zip(xt, yt)), bs=bs, shuffle=True, drop_last=True),
        DataLoader(list(zip(xv, yv)), bs=bs),
        device="cpu",
    )


def make_fastai_learn(path, seed: int = 0, loss_func=None, two_groups: bool = False) -> Learner:
    dls = fastai_dls(seed=seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    kw = {"splitter": lambda m: [list(m[0].parameters()), list(m[2].parameters())]} if two_groups else {}
    return Learner(dls, model, loss_func=loss_func or CrossEntropyLossFlat(), metrics=accuracy, path=path, **kw)


@pytest.fixture
def learn(tmp_path) -> Learner:
    return make_fastai_learn(tmp_path)


class Hypers(Callback):
    """Records every parameter group's lr at each training batch (what fastai's optimizer really used)."""

    order = 90

    def __init__(self):
        super().__init__()
        self.lrs_seen: list[list[float]] = []

    def after_batch(self):
        if self.learn.training:
            self.lrs_seen.append([float(h["lr"]) for h in self.learn.opt.hypers])


def spy_lr_find(learn: Learner) -> dict:
    """Wrap the fastai learner's lr_find to keep what it was called with and what it returned."""
    real, got = learn.lr_find, {}

    def spy(**kw):
        got["kw"] = kw
        got["ret"] = real(**kw)
        return got["ret"]

    learn.lr_find = spy
    return got


# -- optional dependency -------------------------------------------------------------------------------


def test_importing_lrwidget_does_not_import_fastai():
    code = "import sys, lrwidget.widget, lrwidget.integrations.fastai_adapter; assert 'fastai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=TIMEOUT)


def test_the_adapter_has_the_written_interface_and_ctrl_c_stops_its_run(learn):
    from test_interrupts import interrupt_a_widget_fit

    from lrwidget.core.interface import Driven

    assert isinstance(FastaiLearner(learn), Driven)
    w = interrupt_a_widget_fit(learn)
    assert w.learn.run.end_reason == "interrupted" and "fit interrupted after" in w.status and not w.busy


def test_a_fastai_learner_is_wrapped_and_ours_is_not(learn, tmp_path):
    w = LRWidget(learn)
    assert isinstance(w.learn, FastaiLearner) and w.learn.learn is learn
    assert w.learn.model is learn.model and w.learn.dls is learn.dls, "other attributes come from fastai's learner"
    assert is_fastai_learner(learn) and not is_fastai_learner(w.learn)
    assert "Find LR" in w.status
    ours = OurLearner(digits(), nn.Linear(64, 10), device="cpu")
    assert not is_fastai_learner(ours) and LRWidget(ours).learn is ours
    print(f"fastai {fastai.__version__}")


# -- lr_find -------------------------------------------------------------------------------------------


def test_find_runs_fastais_lr_find_and_shows_its_suggestions(w, learn, tmp_path):
    got = spy_lr_find(learn)
    click(w.find_button)
    w.wait(TIMEOUT)
    assert w.code == FIND_CODE and w.code in w.code_html.value
    kw = got["kw"]
    assert (kw["start_lr"], kw["end_lr"], kw["num_it"], kw["stop_div"], kw["show_plot"]) == (
        1e-7,
        10.0,
        100,
        True,
        False,
    )
    assert [f.__name__ for f in kw["suggest_funcs"]] == ["minimum", "steep", "valley", "slide"]
    ret, res = got["ret"], w.result
    assert res is w.learn.recorder.lr_find_result and "lr_find done" in w.status
    assert (res.lr_min, res.lr_steep, res.valley, res.slide) == (ret.minimum, ret.steep, ret.valley, ret.slide)
    assert res.points["lr_min"][0] == pytest.approx(res.lr_min * 10), (
        "fastai's minimum gives a tenth of the lr at the minimum"
    )
    assert (w.lr_min, w.lr_steep) == (min(res.lr_min, res.lr_steep), max(res.lr_min, res.lr_steep))
    assert w.lr_min <= w.lr_steep and w.markers["lr_min"].x.tolist() == [w.lr_min]
    # the curve is fastai's recorder's; the raw losses come from the adapter's callback and smooth to it
    frec = learn.recorder
    assert np.array_equal(res.lrs, np.array(frec.lrs, dtype=float))
    assert np.allclose(res.losses, [float(v) for v in frec.losses], rtol=1e-6)
    assert len(res.raw_losses) == len(res.lrs) and np.allclose(smooth(res.raw_losses)[0], res.losses, rtol=1e-4)
    n = len(res.lrs) - 5
    cv = w.chart_view
    assert np.array_equal(cv.smooth.x, res.lrs[:n]) and np.array_equal(cv.smooth.y, res.losses[:n])
    assert np.array_equal(cv.raw.y, res.raw_losses[:n]), "the faint raw curve is drawn"
    assert sorted(cv.point_keys) == sorted(k for k, v in res.suggestions.items() if v is not None)
    assert res.end_reason in ("completed", "diverged") and w.learn.run.kind == "lr_find"
    if res.end_reason == "diverged":
        assert len(res.lrs) < 100 and "read off the curve" in w.status
    assert not any((tmp_path / "models").glob("*/_tmp.pth")), "fastai cleaned up the weights it saved"


def test_the_shown_lr_find_code_reproduces_the_suggestions(w, tmp_path):
    assert w.find()
    w.wait(TIMEOUT)
    fresh = make_fastai_learn(tmp_path / "fresh")
    names = {"learn": fresh, "minimum": minimum, "steep": steep, "valley": valley, "slide": slide}
    with fresh.no_bar(), fresh.no_logging():
        ret = eval(w.code, names)  # as typed: fastai also draws its matplotlib plot
    plt.close("all")
    assert tuple(ret) == (w.result.lr_min, w.result.lr_steep, w.result.valley, w.result.slide)


def test_drag_a_marker_sets_its_traitlet_after_find(w):
    assert w.find()
    w.wait(TIMEOUT)
    lo, hi = w.chart_view.lr_range
    v = float(np.sqrt(lo * hi))
    drag(w, "lr_steep", v)
    drag(w, "lr_min", v / 3)
    assert (w.lr_min, w.lr_steep) == (v / 3, v)
    drag(w, "lr_steep", hi * 100)
    assert w.lr_steep == hi, "dropped past the curve: clamped into its lr range"


def test_a_curve_too_short_for_a_fastai_suggestion_says_so_instead_of_raising(w):
    assert w.find(num_it=7)
    w.wait(TIMEOUT)
    res = w.result
    assert res.slide is None and "slide" in res.reasons["slide"] and "more steps" in res.reasons["slide"]
    assert "lr_find done" in w.status and w.error_box.layout.display == "none"


def test_a_new_widget_starts_at_the_last_lr_find(w, learn):
    assert w.find()
    w.wait(TIMEOUT)
    w2 = LRWidget(learn)
    assert w2.learn.learn is learn and w2.result is w.result
    assert (w2.lr_min, w2.lr_steep) == (w.lr_min, w.lr_steep) and "last lr_find" in w2.status


def test_stop_during_lr_find_leaves_the_weights_as_they_were(w, learn, tmp_path):
    before = weights(learn)
    assert w.find(num_it=20000, end_lr=1e-2)
    wait_for(lambda: w.learn.recorder.n_batches >= 5)
    lr_before = (w.lr_min, w.lr_steep)
    click(w.stop_button)
    w.wait(TIMEOUT)
    assert w.learn.run.end_reason == "stopped" and w.result.end_reason == "stopped"
    assert w.learn.recorder.n_batches < 20000
    assert same(weights(learn), before), "fastai's LRFinder reloaded the weights after the cancel"
    assert (w.lr_min, w.lr_steep) == lr_before and "lr_find stopped" in w.status
    assert "fastai's lr_find reloaded the model and optimizer" in w.status and "random" in w.status
    assert w.chart_view.lr_range == (1e-7, 1e-2)
    assert not any((tmp_path / "models").glob("*/_tmp.pth"))


# -- fit -----------------------------------------------------------------------------------------------


def test_fit_runs_fastais_fit_one_cycle_with_the_dragged_values(tmp_path, capsys):
    learn = make_fastai_learn(tmp_path, two_groups=True)
    hyp = Hypers()
    learn.add_cb(hyp)
    assert any(isinstance(cb, ProgressCallback) for cb in learn.cbs)
    w = LRWidget(learn, epochs=2)
    a, b = 0.0012345678901234567, 0.031234567890123456
    drag(w, "lr_steep", b)
    drag(w, "lr_min", a)
    click(w.fit_button)
    w.wait(TIMEOUT)
    assert w.code == f"learn.fit_one_cycle(2, lr_max=slice({a!r}, {b!r}))"
    assert w.learn.run.end_reason == "completed" and "fit done" in w.status
    frec, rec = learn.recorder, w.learn.recorder
    n = 2 * len(learn.dls.train)
    assert len(frec.values) == 2 and len(hyp.lrs_seen) == n == rec.n_batches
    peaks = np.max(np.array(hyp.lrs_seen), axis=0)
    assert peaks == pytest.approx([a, b], rel=1e-6), "slice(lr_min, lr_steep) over the two parameter groups"
    assert max(rec.lrs) == pytest.approx(w.lr_steep, rel=1e-6) and rec.lrs == [lr[-1] for lr in hyp.lrs_seen]
    assert all(m is not None and 0.8 < m < 1 for m in rec.moms)
    # the epoch table and charts show fastai's per-epoch values
    assert rec.metric_names == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert rec.values == [[float(v) for v in row] for row in frec.values]
    table = w.table_html.value
    assert table.count("<tr>") == 1 + 2 and all(f">{c}</th>" in table for c in rec.metric_names)
    assert f"{frec.values[-1][2]:.6f}" in table
    assert len(w.loss_chart.train.y) == n and len(w.loss_chart.valid.y) == 2
    assert w.progress.value == n == w.progress.max
    assert any(isinstance(cb, ProgressCallback) for cb in learn.cbs), "fastai's progress bar is back after the run"
    assert not any(type(cb).__name__ == "LRWidgetCallback" for cb in learn.cbs)
    assert capsys.readouterr().out == "", "no fastai progress bar or epoch table on stdout"
    learn.fit(1)  # the same learner outside the widget does print: the check above can fail
    assert "train_loss" in capsys.readouterr().out


def test_find_then_fit_prints_nothing(w, learn, capsys):
    assert w.find()
    w.wait(TIMEOUT)
    assert w.fit(1)
    w.wait(TIMEOUT)
    assert capsys.readouterr().out == ""
    assert "fit done" in w.status and len(learn.recorder.values) == 1


def test_stop_ends_a_fit_within_a_batch_or_two_and_keeps_the_weights(w, learn):
    start = weights(learn)
    assert w.fit(200)
    wait_for(lambda: w.learn.recorder.n_batches >= 5)
    click(w.stop_button)
    n0 = w.learn.recorder.n_batches
    w.wait(TIMEOUT)
    assert w.learn.run.end_reason == "stopped" and w.learn.recorder.n_batches - n0 <= 2
    assert len(learn.recorder.values) < 200 and not same(weights(learn), start)
    assert "fit stopped" in w.status and not w.busy and not w.fit_button.disabled


# -- errors --------------------------------------------------------------------------------------------


class Boom(Exception):
    pass


def exploding_loss(after: int):
    calls = []

    def bad_loss(out, y):
        calls.append(1)
        if len(calls) > after:
            raise Boom("the loss blew up")
        return nn.functional.cross_entropy(out, y)

    return bad_loss


def test_an_error_in_the_loss_reaches_status_and_wait(tmp_path):
    learn = make_fastai_learn(tmp_path, loss_func=exploding_loss(3))
    w = LRWidget(learn)
    click(w.fit_button)
    with pytest.raises(Boom, match="the loss blew up"):
        w.wait(TIMEOUT)
    assert w.status.startswith("error") and "Boom" in w.status and "the loss blew up" in w.status
    assert w.learn.run.end_reason == "error"
    assert w.error_box.layout.display == "" and "bad_loss" in w.traceback_html.value
    assert not w.busy and w.learn.observers == [], "the widget's observer is removed"
    assert not any(type(cb).__name__ == "LRWidgetCallback" for cb in learn.cbs)
    learn.loss_func = CrossEntropyLossFlat()
    assert w.fit()
    w.wait(TIMEOUT)
    assert w.error_box.layout.display == "none" and "fit done" in w.status


def test_an_error_during_lr_find_still_restores_the_weights(tmp_path):
    learn = make_fastai_learn(tmp_path, loss_func=exploding_loss(20))
    before = weights(learn)
    w = LRWidget(learn)
    assert w.find()
    with pytest.raises(Boom):
        w.wait(TIMEOUT)
    assert w.learn.run.end_reason == "error" and w.status.startswith("error: Boom")
    assert same(weights(learn), before), "fastai's own reload ran after the error"
    assert not any((tmp_path / "models").glob("*/_tmp.pth"))


def test_the_shown_fit_code_runs_on_the_fastai_learner(w, learn, tmp_path):
    drag(w, "lr_steep", 0.02)
    assert w.fit(1)
    w.wait(TIMEOUT)
    trained = weights(learn)
    fresh = make_fastai_learn(tmp_path / "fresh")
    with fresh.no_bar(), fresh.no_logging():
        exec(w.code, {"learn": fresh})
    assert same(weights(fresh), trained), "the same call on an identical fastai learner gives the same weights"


def test_remembering_the_last_lr_find_keeps_no_fastai_learner_alive(tmp_path):
    learn = make_fastai_learn(tmp_path)
    adapter = FastaiLearner(learn)
    res = adapter.lr_find(num_it=20, show_plot=False)
    assert FastaiLearner(learn).recorder.lr_find_result is res
    ref = weakref.ref(learn)
    del adapter, learn
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("arch", ["resnet18", "mlp"])
def test_weight_decay_skips_the_parameters_fastai_skips(arch):
    """fastai's default (wd_bn_bias=False): no weight decay on norm layers' parameters and on biases."""
    import torchvision
    from fastai.torch_core import norm_bias_params as fastai_norm_bias_params

    from lrwidget import vision_learner

    if arch == "mlp":
        learn = OurLearner(
            digits(),
            nn.Sequential(
                nn.Linear(64, 32), nn.LayerNorm(32), nn.ReLU(), nn.BatchNorm1d(32), nn.Linear(32, 10, bias=False)
            ),
            device="cpu",
        )
    else:
        learn = vision_learner(
            digits(images=True, size=16, channels=3), torchvision.models.resnet18, pretrained=False, device="cpu"
        )
    exempt = {id(p) for g in learn.opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    decayed = {id(p) for g in learn.opt.param_groups if g["weight_decay"] == 0.01 for p in g["params"]}
    theirs = {id(p) for p in fastai_norm_bias_params(learn.model)}
    assert exempt == theirs and decayed == {id(p) for p in learn.model.parameters()} - theirs


def test_our_learner_takes_fastais_own_suggest_funcs():
    """Code written for fastai 2.8's lr_find reads the same: its suggest_funcs, its names, its order."""
    from lrwidget.core.suggest import trim

    torch.manual_seed(0)
    learn = OurLearner(digits(), nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), device="cpu")
    ours = learn.lr_find(show_plot=False)
    res = learn.lr_find(show_plot=False, suggest_funcs=(minimum, steep, valley, slide))
    assert list(res) == [res.minimum, res.steep, res.valley, res.slide]
    for name, mine in [("minimum", ours.lr_min), ("valley", ours.valley), ("slide", ours.slide)]:
        assert getattr(res, name) == pytest.approx(mine, rel=1e-6), name  # fastai computes in float32
    lrs, losses = trim(res.lrs, res.losses, res.num_it)
    theirs, _ = steep(torch.tensor(lrs.tolist()), torch.tensor(losses.tolist()), res.num_it)
    assert res.steep == pytest.approx(float(theirs), rel=1e-12), (
        "fastai's steep, as asked (it searches the whole curve)"
    )


def test_widgets_on_one_fastai_learner_share_one_run_at_a_time(w, learn):
    other = LRWidget(learn)
    assert other.learn is not w.learn and other.learn.guard is w.learn.guard
    with w.learn.guard("fit"):
        assert w.learn.busy and other.learn.busy
        assert not other.fit() and not other.find() and "the learner is busy with another run" in other.status
        with pytest.raises(RuntimeError, match=r"busy with fit\b.*lr_find cannot start"):
            other.learn.lr_find(show_plot=False)
    assert other.find()
    other.wait(60)
    assert other.result is not None and not other.learn.busy


def test_find_with_suggest_funcs_on_a_fastai_learner_answers_for_those(w, learn):
    """w.find(suggest_funcs=...) reads as fastai 2.8's lr_find on the fastai learner too."""
    got = spy_lr_find(learn)
    assert w.find(suggest_funcs=(valley, slide))
    w.wait(TIMEOUT)
    assert w.code == "learn.lr_find(start_lr=1e-07, end_lr=10.0, num_it=100, suggest_funcs=(valley, slide))"
    res, ret = w.result, got["ret"]
    assert list(res) == [res.valley, res.slide] == [ret.valley, ret.slide]
    assert (w.lr_min, w.lr_steep) == (min(res.lr_min, res.lr_steep), max(res.lr_min, res.lr_steep))
    with pytest.raises(TypeError, match="suggest_funcs must be a function or a sequence"):
        w.learn.lr_find(suggest_funcs="valley", show_plot=False)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"lin_ftrs": [256, 128]},
        {"ps": [0.1, 0.2]},
        {"concat_pool": False},
        {"y_range": (0, 5)},
        {"bn_final": True},
        {"lin_first": True},
        {"first_bn": False},
        {"pool": False},
    ],
)
def test_create_head_is_fastais(kw):
    from fastai.vision.learner import create_head as fastai_head

    from lrwidget.integrations.vision import create_head

    def layout(head):
        return [
            (type(m).__name__, tuple(p.shape for p in m.parameters(recurse=False)), getattr(m, "p", None))
            for m in head.modules()
            if not list(m.children())
        ]

    assert layout(create_head(64, 10, **kw)) == layout(fastai_head(64, 10, **kw))


@pytest.mark.parametrize(
    "name", ["resnet18", "densenet121", "vgg11_bn", "squeezenet1_0", "alexnet", "mobilenet_v3_small"]
)
def test_vision_learner_splits_into_fastais_parameter_groups(name):
    import torchvision.models as tvm
    from fastai.vision.learner import _default_meta, create_vision_model, model_meta

    from lrwidget import vision_learner

    arch = getattr(tvm, name)
    fastai_model = create_vision_model(arch, 10, pretrained=False)
    fastai_groups = model_meta.get(arch, _default_meta)["split"](fastai_model)
    dls = digits(images=True, size=64, channels=3)
    learn = vision_learner(dls, arch, pretrained=False)
    assert [sum(p.numel() for p in g) for g in learn.layer_groups] == [sum(p.numel() for p in g) for g in fastai_groups]


@pytest.mark.parametrize("n_in", [1, 2, 4])
def test_a_pretrained_first_convolution_adapts_as_fastais(n_in, monkeypatch):
    import torchvision.models._api
    from fastai.vision.learner import _load_pretrained_weights
    from torchvision.models import resnet18

    from lrwidget import vision_learner

    torch.manual_seed(0)
    weights = resnet18().state_dict()  # the "pretrained" weights, offline
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda *a, **k: weights)
    ours = vision_learner(digits(images=True, size=16), resnet18, pretrained=True, n_in=n_in).model[0][0]
    rgb = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    rgb.load_state_dict({"weight": weights["conv1.weight"]})
    theirs = nn.Conv2d(n_in, 64, 7, 2, 3, bias=False)
    _load_pretrained_weights(theirs, rgb)
    assert ours.in_channels == n_in and torch.equal(ours.weight, theirs.weight)


def test_fits_from_the_same_start_on_a_fastai_learner_are_identical_and_reset_puts_it_back(learn):
    w = LRWidget(learn, epochs=1)
    w.lr_min, w.lr_steep = 1e-3, 1e-2
    start = weights(w.learn)
    w.from_start = True
    for _ in range(2):
        assert w.fit(1)
        w.wait(TIMEOUT)
    a, b = w.runs
    assert a.values == b.values and len(a.values) == 1 and a.from_start, "fastai's fit, twice from the same start"
    assert learn.opt is not None and learn.opt.state, "fastai made its optimizer and state in the first fit"
    trained = weights(w.learn)
    assert w.fit(2)
    w.wait(TIMEOUT)
    w.reset()
    assert same(weights(w.learn), start) and learn.opt is None, "the start is from before fastai made its optimizer"
    assert not same(trained, start)
    w.mark_start()  # now with an optimizer and its state, after a fit
    assert w.fit(1)
    w.wait(TIMEOUT)
    marked = weights(w.learn)
    assert w.sweep(lrs=[1e-3, 3e-2])
    w.wait(TIMEOUT)
    assert [r.lr_steep for r in w.runs[-2:]] == [1e-3, 3e-2] and w.runs[-1].values != w.runs[-2].values
    w.reset()
    assert not same(weights(w.learn), marked) and same(w.learn.take_state()["model"], w.start.state["model"])


def test_the_start_of_a_fastai_learner_goes_to_disk_when_memory_is_short(learn, monkeypatch, tmp_path):
    from lrwidget.state import disk, memory

    folder = tmp_path / "copies"
    monkeypatch.setattr(memory, "available_memory", lambda: 1)  # "auto": disk
    monkeypatch.setattr(disk, "default_dir", lambda: folder)
    monkeypatch.setattr(disk, "SMALL", -1)  # every tensor in a file, fastai's optimizer state too
    w = LRWidget(learn, epochs=1)
    w.lr_min, w.lr_steep, w.from_start = 1e-3, 1e-2, True
    assert w.fit(1)
    w.wait(TIMEOUT)
    w.mark_start()  # with fastai's optimizer and its state
    start = weights(w.learn)
    for _ in range(2):
        assert w.fit(1)
        w.wait(TIMEOUT)
    a, b = w.runs[-2:]
    assert isinstance(w.start.state, disk.DiskCopy) and len(list(w.start.state.folder.iterdir())) > 4
    assert a.values == b.values and w.status.endswith(f"on disk in {w.start.state.folder}")
    w.reset()
    assert same(weights(w.learn), start) and learn.opt.state
    w.close()
    assert list(folder.iterdir()) == []
