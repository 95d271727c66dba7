"""The Learner: lr_find with exact restore, fit and fit_one_cycle on one loop, recorder, save/load, bad input."""

from __future__ import annotations

import math
import random
import re
import warnings
from functools import partial
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from lrwidget import DataLoaders, Learner, LRFindResult, accuracy, error_rate
from lrwidget.core.events import Observer
from lrwidget.core.schedules import one_cycle
from lrwidget.data import digits


def mlp(seed: int = 0, bn: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = (
        [nn.Linear(64, 64)] + ([nn.BatchNorm1d(64)] if bn else []) + [nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10)]
    )
    return nn.Sequential(*layers)


def make_learner(seed: int = 0, bn: bool = True, **kw) -> Learner:
    return Learner(digits(seed=seed), mlp(seed, bn), metrics=[accuracy, error_rate], device="cpu", **kw)


def state_of(learn: Learner) -> dict:
    """Everything lr_find must leave as it found it, copied."""
    gens = [learn.dls.train.generator.get_state()]
    return {
        "model": {k: v.clone() for k, v in learn.model.state_dict().items()},
        "opt": _clone(learn.opt.state_dict()),
        "training": [m.training for m in learn.model.modules()],
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "random": random.getstate(),
        "loader": gens,
    }


def _clone(o):
    if isinstance(o, torch.Tensor):
        return o.clone()
    if isinstance(o, dict):
        return {k: _clone(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return type(o)(_clone(v) for v in o)
    return o


def assert_same(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.fixture
def trained() -> Learner:
    """A learner with a non-empty optimizer state, in eval mode, with moved random states."""
    learn = make_learner()
    learn.fit(1, 1e-3)
    learn.model.eval()
    torch.manual_seed(123)
    np.random.seed(7)
    random.seed(5)
    return learn


# -- lr_find -----------------------------------------------------------------------------------------


def test_lr_find_result_unpacks_and_suggests_on_digits():
    learn = make_learner()
    res = learn.lr_find()
    assert isinstance(res, LRFindResult)
    lr_min, lr_steep = res
    assert (lr_min, lr_steep) == (res.lr_min, res.lr_steep) == (res[0], res[1])
    for v in res.suggestions.values():
        assert v is not None and 1e-7 < v < 10
    n = len(res.lrs)
    assert 20 < n <= 100 and len(res.losses) == len(res.raw_losses) == n
    np.testing.assert_allclose(res.lrs, 1e-7 * (10 / 1e-7) ** (np.arange(n) / 100), rtol=1e-12)
    assert res.end_reason in ("completed", "diverged")
    assert learn.recorder.lr_find_result is res


def test_suggest_funcs_answer_as_fastais_suggested_lrs():
    from lrwidget.core.suggest import minimum, slide, steep, valley

    learn = make_learner()
    default = learn.lr_find()
    res = learn.lr_find(suggest_funcs=(valley, slide))  # the same curve: lr_find restores everything
    np.testing.assert_array_equal(res.losses, default.losses)
    v, s = res
    assert (v, s) == (res.valley, res.slide) == (default.valley, default.slide) and len(res) == 2
    (only,) = learn.lr_find(suggest_funcs=steep)  # a single function, as fastai's tuplify
    assert only == default.lr_steep
    res = learn.lr_find(suggest_funcs=(minimum, steep, valley, slide))
    assert list(res) == [res.minimum, res.steep, res.valley, res.slide] == list(default.suggestions.values())


def test_suggest_funcs_call_other_functions_as_fastai_does():
    seen = {}

    def third_of_the_minimum(lrs, losses, num_it):
        seen.update(types=(type(lrs), lrs.dtype), num_it=num_it, n=len(lrs))
        i = int(losses.argmin())
        return float(lrs[i]) / 3, (float(lrs[i]), float(losses[i]))

    learn = make_learner()
    res = learn.lr_find(num_it=50, suggest_funcs=(third_of_the_minimum,))
    assert seen["types"] == (torch.Tensor, torch.float32) and seen["num_it"] == 50 and seen["n"] >= 2
    (lr,) = res
    assert lr == res.third_of_the_minimum == res.suggestions["third_of_the_minimum"]
    assert lr == pytest.approx(res.points["third_of_the_minimum"][0] / 3)
    assert res.lr_min is not None, "the four suggestions are still there"


@pytest.mark.parametrize(
    "funcs,error,match",
    [
        ("valley", TypeError, "suggest_funcs must be a function or a sequence of functions"),
        ((), TypeError, "suggest_funcs must be"),
        ((len, 3), TypeError, "suggest_funcs must be"),
    ],
)
def test_bad_suggest_funcs_are_refused_before_anything_runs(funcs, error, match):
    learn = make_learner()
    with pytest.raises(error, match=match):
        learn.lr_find(suggest_funcs=funcs)
    assert learn.run is None, "refused before lr_find ran"


def test_a_suggestion_named_twice_is_refused():
    from lrwidget.core.suggest import valley

    with pytest.raises(ValueError, match="names a suggestion twice"):
        make_learner().lr_find(suggest_funcs=(valley, valley))


def test_lr_find_smoothing_is_debiased_ema():
    learn = make_learner()
    res = learn.lr_find(num_it=30, stop_div=False)
    raw, avg, want = res.raw_losses, 0.0, []
    for i, v in enumerate(raw, 1):
        avg = 0.98 * avg + 0.02 * v
        want.append(avg / (1 - 0.98**i))
    np.testing.assert_allclose(res.losses, want, rtol=1e-12)


def test_lr_find_stops_on_divergence():
    learn = make_learner()
    res = learn.lr_find(start_lr=1e-3, end_lr=1e6, num_it=100)
    assert res.end_reason in ("diverged", "non-finite loss") and len(res.lrs) < 100
    assert not (np.isfinite(res.losses[-1]) and res.losses[-1] <= 4 * res.losses.min())


def test_lr_find_reuses_the_loader_for_many_steps():
    learn = make_learner()
    n_batches = len(learn.dls.train)
    res = learn.lr_find(start_lr=1e-6, end_lr=1e-4, num_it=3 * n_batches + 5, stop_div=False)
    assert len(res.lrs) == 3 * n_batches + 5


class _StopAt(Observer):
    def __init__(self, k: int, action):
        self.k, self.action, self.n = k, action, 0

    def batch_end(self, learn):
        self.n += 1
        if self.n == self.k:
            self.action(learn)


def _raise(exc):
    def f(learn):
        raise exc

    return f


ENDINGS = {
    "normal": lambda learn: learn.lr_find(start_lr=1e-5, end_lr=1e-3, num_it=20),
    "divergence": lambda learn: learn.lr_find(start_lr=1e-2, end_lr=1e7, num_it=100),
    "stop": lambda learn: (learn.observers.append(_StopAt(5, Learner.stop)), learn.lr_find(show_plot=False))[1],
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_lr_find_restores_everything(trained, ending):
    before = state_of(trained)
    res = ENDINGS[ending](trained)
    assert_same(before, state_of(trained))
    if ending == "stop":
        assert res.end_reason == "stopped" and len(res.lrs) == 5


@pytest.mark.parametrize("exc", [RuntimeError("boom in the model"), KeyboardInterrupt()])
def test_lr_find_restores_after_an_exception(trained, exc):
    before = state_of(trained)
    trained.observers.append(_StopAt(4, _raise(exc)))
    with pytest.raises(type(exc)):
        trained.lr_find()
    assert_same(before, state_of(trained))


def test_lr_find_restores_after_non_finite_loss(trained):
    before = state_of(trained)
    calls = {"n": 0}
    ce = nn.CrossEntropyLoss()

    def nan_after_6(out, y):
        calls["n"] += 1
        return ce(out, y) * (math.nan if calls["n"] > 6 else 1.0)

    trained.loss_func = nan_after_6
    with pytest.warns(
        UserWarning,
        match=r"could not suggest lr_min, lr_steep.*stopped being finite after 7 steps.*lower start_lr.*None",
    ):
        res = trained.lr_find()
    assert res.end_reason == "non-finite loss" and len(res.lrs) == 7
    trained.loss_func = ce
    assert_same(before, state_of(trained))


def test_lr_find_error_inside_loss_restores(trained):
    before = state_of(trained)
    ce, calls = nn.CrossEntropyLoss(), {"n": 0}

    def bad(out, y):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ZeroDivisionError("bad loss")
        return ce(out, y)

    trained.loss_func = bad
    with pytest.raises(ZeroDivisionError):
        trained.lr_find()
    trained.loss_func = ce
    assert_same(before, state_of(trained))


def _opt_tensors(learn: Learner) -> dict:
    return {(id(p), k): v for p, st in learn.opt.state.items() for k, v in st.items() if isinstance(v, torch.Tensor)}


def test_lr_find_restores_the_optimizer_into_its_own_tensors(trained):
    """No new optimizer tensors after lr_find: on a GPU the restore then needs no device memory."""
    before = {key: (t, t.data_ptr(), t.clone()) for key, t in _opt_tensors(trained).items()}
    trained.lr_find(num_it=30)
    after = _opt_tensors(trained)
    assert after.keys() == before.keys()
    for key, (t, ptr, value) in before.items():
        assert after[key] is t and t.data_ptr() == ptr and torch.equal(t, value), key


def test_lr_find_on_a_fresh_learner_leaves_no_optimizer_state():
    learn = make_learner()
    learn.lr_find(num_it=20)
    assert len(learn.opt.state) == 0 and learn.opt.state_dict()["state"] == {}


def test_optimizer_restore_falls_back_when_the_state_changed_layout(trained):
    from lrwidget.state.copies import load_opt_in_place

    saved = _clone(trained.opt.state_dict())
    p = trained.opt.param_groups[0]["params"][0]
    trained.opt.state[p]["exp_avg"] = torch.zeros(3)  # a different shape: cannot be copied into
    trained.opt.param_groups[0]["lr"] = 123.0
    load_opt_in_place(trained.opt, saved)
    assert_same(saved, _clone(trained.opt.state_dict()))


def test_training_after_lr_find_is_bit_for_bit_training_without():
    a, b = make_learner(seed=3), make_learner(seed=3)
    torch.manual_seed(11)
    a.lr_find()
    a.fit_one_cycle(2, lr_max=3e-3)
    torch.manual_seed(11)
    b.fit_one_cycle(2, lr_max=3e-3)
    for (k, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(pa, pb), k
    assert a.recorder.values == b.recorder.values


def test_lr_find_input_errors():
    learn = make_learner()
    with pytest.raises(ValueError, match="start_lr must be below end_lr"):
        learn.lr_find(start_lr=1.0, end_lr=1e-3)
    with pytest.raises(ValueError, match="start_lr must be below end_lr"):
        learn.lr_find(start_lr=1.0, end_lr=1.0)
    for bad in (0, -1e-3, math.nan, math.inf):
        with pytest.raises(ValueError, match="start_lr must be a positive finite number"):
            learn.lr_find(start_lr=bad)
    with pytest.raises(ValueError, match="end_lr must be a positive finite number"):
        learn.lr_find(end_lr=-1)
    with pytest.raises(ValueError, match=r"num_it must be a whole number >= 7.*drop the first"):
        learn.lr_find(num_it=5)
    with pytest.raises(ValueError, match="num_it"):
        learn.lr_find(num_it=50.5)


def test_short_lr_find_gives_none_with_reasons_not_errors():
    learn = make_learner()
    res = learn.lr_find(num_it=8, start_lr=1e-4, end_lr=1e-2, show_plot=False)
    assert res.slide is None and "slide" in res.reasons and res.reasons["slide"]


def test_lr_find_warns_of_a_missing_suggestion_and_fit_names_where_to_look():
    learn = make_learner()
    learn.loss_func = lambda out, y: nn.functional.cross_entropy(out, y) * 0 + torch.arange(1.0, 2.0).sum()
    with pytest.warns(UserWarning, match=r"^lr_find could not suggest lr_min, lr_steep.*loss is flat") as w:
        res = learn.lr_find(num_it=20)
    assert [x.filename for x in w] == [__file__], "the warning names the caller's line"
    assert res.missing == {"lr_min": res.reasons["lr_min"], "lr_steep": res.reasons["lr_steep"]}
    with pytest.raises(TypeError, match=r"slice\(None, None\).*None lr.*lr_find suggestion"):
        learn.fit_one_cycle(1, lr_max=slice(res.lr_min, res.lr_steep))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert learn.lr_find(start_lr=1e-5, end_lr=1e-3, num_it=20, show_plot=False).missing  # quiet without plot
        learn.loss_func = None
        assert learn.lr_find(num_it=100).missing == {}  # and when every suggestion is there


@pytest.mark.parametrize(
    "loss, start_lr, why",
    [
        (lambda out, y: (out * math.nan).sum(), 1e-7, r"not finite from the first step.*check the model and data"),
        (
            None,
            1.0,
            r"(diverged|stopped being finite) after \d steps.*too early.*lower start_lr",
        ),
    ],
)
def test_lr_find_that_ends_at_once_says_why(loss, start_lr, why):
    learn = make_learner()
    learn.loss_func = loss
    res = learn.lr_find(start_lr=start_lr, end_lr=1e7, show_plot=False)
    assert res.lr_min is None and re.search(why, res.reasons["lr_min"]), res.reasons
    assert "num_it" not in res.reasons["lr_min"], "more steps would not help"


def test_a_stop_while_lr_find_copies_the_state_is_not_lost(monkeypatch):
    import lrwidget.state.copies

    learn = make_learner()
    take = lrwidget.state.copies.take

    def stop_while_copying(*args):
        learn.stop()  # as the widget's Stop would, from another thread, mid-copy
        return take(*args)

    monkeypatch.setattr(lrwidget.state.copies, "take", stop_while_copying)
    res = learn.lr_find(show_plot=False)
    assert res.end_reason == "stopped" and len(res.lrs) == 0
    assert "stopped before its first step" in res.reasons["lr_min"]
    monkeypatch.undo()
    learn.lr_find(num_it=10, show_plot=False)
    assert learn.run.end_reason == "completed", "a new run starts afresh"


def test_a_loss_of_one_element_is_a_number_and_more_is_refused():
    learn = make_learner()
    learn.loss_func = lambda out, y: nn.functional.cross_entropy(out, y).reshape(1)
    learn.fit(1, 1e-3)
    assert learn.recorder.losses.shape == (len(learn.dls.train),) and learn.recorder.values[0][1] > 0
    learn.loss_func = nn.CrossEntropyLoss(reduction="none")
    with pytest.raises(
        ValueError,
        match=r"CrossEntropyLoss.*\(64,\).*one number per batch.*reduction='mean'",
    ):
        learn.fit(1, 1e-3)


# -- fit_one_cycle and fit ---------------------------------------------------------------------------


def test_fit_one_cycle_follows_fastai_schedule_per_batch():
    learn = make_learner()
    learn.fit_one_cycle(2, lr_max=1e-2)
    n = 2 * len(learn.dls.train)
    rec = learn.recorder
    assert len(rec.lrs) == len(rec.moms) == len(rec.losses) == n
    lrs, moms = one_cycle(n, 1e-2)
    np.testing.assert_allclose(rec.lrs, lrs[:, -1], rtol=1e-12)
    np.testing.assert_allclose(rec.moms, moms, rtol=1e-12)
    k = np.arange(n) / n
    want = np.where(
        k < 0.25,
        4e-4 + (1 + np.cos(np.pi * (1 - k / 0.25))) * (1e-2 - 4e-4) / 2,
        1e-2 + (1 + np.cos(np.pi * (1 - (k - 0.25) / 0.75))) * (1e-7 - 1e-2) / 2,
    )
    np.testing.assert_allclose(rec.lrs, want, rtol=1e-9)
    assert rec.lrs[0] == pytest.approx(1e-2 / 25) and max(rec.lrs) <= 1e-2
    assert learn.opt.param_groups[0]["betas"][0] == pytest.approx(moms[-1])


def test_fit_one_cycle_schedules_sgd_momentum():
    learn = make_learner(opt_func=partial(torch.optim.SGD, lr=0.1, momentum=0.9))
    learn.fit_one_cycle(1, lr_max=0.1)
    assert rec_min(learn.recorder.moms) == pytest.approx(0.85, abs=1e-3)
    assert learn.recorder.moms[0] == pytest.approx(0.95)
    assert learn.opt.param_groups[0]["momentum"] == pytest.approx(learn.recorder.moms[-1])


def rec_min(x):
    return min(x)


def three_group_learner(**kw) -> Learner:
    def splitter(m):
        return [list(m[0].parameters()), list(m[1].parameters()), list(m[4].parameters())]

    return Learner(digits(), mlp(bn=True), splitter=splitter, device="cpu", **kw)


def layer_lrs(learn: Learner) -> list[float]:
    """The lr of each layer group; its decayed and its exempt optimizer groups must agree."""
    by_layer: dict[int, set] = {}
    for g in learn.opt.param_groups:
        by_layer.setdefault(g["layer_group"], set()).add(g["lr"])
    assert all(len(v) == 1 for v in by_layer.values()), by_layer
    return [by_layer[i].pop() for i in sorted(by_layer)]


class _PeakLrs(Observer):
    def __init__(self):
        self.peak = None

    def batch_end(self, learn):
        lrs = layer_lrs(learn)
        if self.peak is None or lrs[-1] > self.peak[-1]:
            self.peak = lrs


@pytest.mark.parametrize(
    "lr_max,want",
    [
        (slice(1e-4, 1e-2), [1e-4, 1e-3, 1e-2]),
        (slice(None, 1e-2), [1e-3, 1e-3, 1e-2]),
        (3e-3, [3e-3, 3e-3, 3e-3]),
    ],
)
def test_discriminative_lrs_over_param_groups(lr_max, want):
    learn = three_group_learner()
    obs = _PeakLrs()
    learn.observers.append(obs)
    n = len(learn.dls.train)
    learn.fit_one_cycle(4, lr_max=lr_max)  # the peak batch is k = n exactly: pos = pct_start
    assert 4 * n * 0.25 == n
    np.testing.assert_allclose(obs.peak, want, rtol=1e-12)


def _zero_grad_step(learn: Learner) -> dict[str, torch.Tensor]:
    """One AdamW step on a loss with zero gradients: only decoupled weight decay moves a parameter."""
    before = {k: v.detach().clone() for k, v in learn.model.named_parameters()}
    learn.loss_func = lambda out, y: out.sum() * 0
    learn.fit(1, 0.1)
    return {k: before[k] - v.detach() for k, v in learn.model.named_parameters()}


def test_weight_decay_skips_norm_and_bias_parameters_as_fastai_does():
    learn = Learner(DataLoaders(list(digits().train)[:1]), mlp(bn=True), device="cpu", wd=0.5)
    moved = _zero_grad_step(learn)
    decayed = {k for k, d in moved.items() if d.abs().max() > 0}
    assert decayed == {"0.weight", "4.weight"}, decayed  # Linear weights; not biases, not BatchNorm
    assert learn.layer_lrs == [0.1]
    for g in learn.opt.param_groups:
        assert g["weight_decay"] == (0.0 if g.get("wd_exempt") else 0.5)


def test_wd_bn_bias_true_decays_everything():
    learn = Learner(DataLoaders(list(digits().train)[:1]), mlp(bn=True), device="cpu", wd=0.5, wd_bn_bias=True)
    nn.init.ones_(learn.model[1].bias)  # BatchNorm's bias starts at 0: nothing to decay
    moved = _zero_grad_step(learn)
    assert all(d.abs().max() > 0 for d in moved.values()) and len(learn.opt.param_groups) == 1


def test_fit_wd_changes_only_the_decayed_groups():
    learn = three_group_learner()
    learn.fit(1, 1e-3, wd=0.25)
    wds = {(g["layer_group"], bool(g.get("wd_exempt"))): g["weight_decay"] for g in learn.opt.param_groups}
    assert wds == {(0, False): 0.25, (0, True): 0.0, (1, True): 0.0, (2, False): 0.25, (2, True): 0.0}


def test_an_opt_func_that_makes_its_own_groups_still_works():
    learn = Learner(
        digits(),
        mlp(),
        device="cpu",
        opt_func=lambda groups: torch.optim.SGD(
            [{"params": [p for g in groups for p in g["params"]]}], lr=0.1, momentum=0.9
        ),
    )
    assert len(learn.layer_groups) == 1
    learn.fit_one_cycle(2, slice(1e-3, 1e-2))  # 44 batches: batch 11 is the peak
    assert max(learn.recorder.lrs) == pytest.approx(1e-2, rel=1e-12) and learn.layer_lrs == [learn.recorder.lrs[-1]]


def test_validate_reads_the_model_as_it_is():
    learn = make_learner(loss_func=None)
    before = learn.validate()  # before any training: the loss is inferred
    assert len(before) == 3 and 2.0 < before[0] < 2.6
    learn.observers.append(_StopAt(30, Learner.stop))
    learn.fit(2, 3e-3)  # stopped in epoch 2: the stop flag stays set
    learn.observers.clear()
    learn.fit(1, 3e-3)
    learn.model.train()
    after = learn.validate()
    assert after == learn.recorder.values[-1][1:] and after[1] > 0.9
    assert all(m.training for m in learn.model.modules()), "validate leaves the modules' modes as they were"
    learn.stop()
    assert learn.validate() == after, "a pending stop does not cut validate short"
    with pytest.raises(ValueError, match="no validation data"):
        Learner(DataLoaders(learn.dls.train), mlp(), device="cpu").validate()


class _Phases(Observer):
    """Per run: the layer groups' peak lrs and which parameters train."""

    def __init__(self):
        self.runs = []

    def fit_start(self, learn):
        self.runs.append({"peak": None, "trainable": [p.requires_grad for p in learn.model.parameters()]})

    def batch_end(self, learn):
        r, lrs = self.runs[-1], learn.layer_lrs
        if r["peak"] is None or lrs[-1] > r["peak"][-1]:
            r["peak"] = lrs

    def epoch_end(self, learn):
        self.runs[-1]["values"] = [list(v) for v in learn.recorder.values]


def test_fine_tune_is_fastais_two_phases():
    learn = three_group_learner(metrics=accuracy)
    obs = _Phases()
    learn.observers.append(obs)
    learn.fine_tune(2, base_lr=2e-2)
    first, second = obs.runs
    bn = {id(p) for p in learn.model[1].parameters()}
    head = {id(p) for p in learn.model[4].parameters()}
    assert first["trainable"] == [id(p) in head or id(p) in bn for p in learn.model.parameters()]
    assert all(second["trainable"])
    np.testing.assert_allclose(first["peak"], [2e-3, 2e-3, 2e-2], rtol=1e-2)  # slice(base_lr), peak at 99%
    np.testing.assert_allclose(second["peak"], [1e-4, 1e-3, 1e-2], rtol=1e-3)  # slice(base_lr/2/100, base_lr/2)
    assert len(first["values"]) == 1 and len(second["values"]) == 2
    assert second["values"][-1][1] < first["values"][-1][1] and second["values"][-1][-1] > 0.85  # it learns on


def test_fine_tune_checks_its_arguments_before_freezing():
    learn = three_group_learner()
    for kw, match in [
        ({"epochs": 0}, "epochs must be"),
        ({"epochs": 1, "freeze_epochs": 1.5}, "freeze_epochs must"),
        ({"epochs": 1, "base_lr": -1}, "base_lr must"),
    ]:
        with pytest.raises(ValueError, match=match):
            learn.fine_tune(**kw)
        assert all(p.requires_grad for p in learn.model.parameters()) and learn.run is None


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"pct_start": 2}, "pct_start must be"),
        ({"lr_mult": 0}, "lr_mult must be"),
        ({"div": -1}, "div must be"),
        ({"moms": (0.9, 0.8)}, "moms must be"),
        ({"wd": -1}, "wd must be"),
        ({"div_final": math.nan}, "div_final"),
    ],
)
def test_fine_tune_refuses_a_bad_second_phase_before_training_the_first(kw, match):
    learn = three_group_learner()
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        learn.fine_tune(1, **kw)
    assert learn.run is None and all(p.requires_grad for p in learn.model.parameters())
    assert_same(before, learn.model.state_dict())


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"pct_start": 2}, "pct_start"),
        ({"moms": (1.5, 0.8, 0.9)}, "moms"),
        ({"div": 0}, "div must be"),
        ({"lr_max": [1e-3, 1e-2]}, "layer group"),
    ],
)
def test_a_refused_fit_one_cycle_changes_nothing(kw, match):
    learn = make_learner()
    wds = [g["weight_decay"] for g in learn.opt.param_groups]
    with pytest.raises(ValueError, match=match):
        learn.fit_one_cycle(1, **{"lr_max": 1e-3, "wd": 0.5, **kw})
    assert [g["weight_decay"] for g in learn.opt.param_groups] == wds and learn.run is None


def test_fit_takes_one_lr_per_layer_group_as_fastai():
    learn = three_group_learner()
    obs = _PeakLrs()
    learn.observers.append(obs)
    learn.fit_one_cycle(1, lr_max=[1e-4, 1e-3, 1e-2])
    np.testing.assert_allclose(obs.peak, [1e-4, 1e-3, 1e-2], rtol=5e-3)  # the nearest batch to the peak
    learn.fit(1, np.array([3e-4, 3e-3, 3e-2]))
    assert learn.layer_lrs == [3e-4, 3e-3, 3e-2]


def norm_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 32),
        nn.LayerNorm(32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def test_freeze_keeps_every_norm_layer_trainable_and_clears_the_optimizer_state_as_fastai():
    def split(m):
        return [list(m[:6].parameters()), list(m[6].parameters())]

    learn = Learner(digits(), norm_mlp(), splitter=split, device="cpu")
    learn.fit(1, 1e-3)
    assert len(learn.opt.state) == 10
    learn.freeze()
    trainable = {n for n, p in learn.model.named_parameters() if p.requires_grad}
    assert trainable == {"1.weight", "1.bias", "4.weight", "4.bias", "6.weight", "6.bias"}  # LayerNorm, BatchNorm, head
    assert len(learn.opt.state) == 0, "fastai's freeze_to clears the optimizer state"
    learn.fit(1, 1e-3)
    assert len(learn.opt.state) == 6
    off = Learner(digits(), norm_mlp(), splitter=split, device="cpu", train_bn=False)
    off.freeze()
    assert {n for n, p in off.model.named_parameters() if p.requires_grad} == {"6.weight", "6.bias"}


def test_freezing_every_group_warns_and_training_then_says_what_to_do():
    learn = make_learner()
    with pytest.warns(UserWarning, match=r"5 layer groups of 1.*whole model is frozen") as w:
        learn.freeze_to(5)
    assert [x.filename for x in w] == [__file__]
    learn = Learner(digits(), mlp(), device="cpu")  # no norm layers: nothing stays trainable
    with pytest.warns(UserWarning):
        learn.freeze_to(1)
    with pytest.raises(ValueError, match=r"every parameter is frozen.*learn.unfreeze\(\)"):
        learn.fit(1)
    with pytest.raises(TypeError, match="freeze_to takes the index"):
        learn.freeze_to(0.5)
    learn.unfreeze()
    learn.fit(1)


def test_a_stop_during_fine_tunes_first_phase_ends_it():
    learn = three_group_learner()
    obs = _Phases()
    learn.observers += [obs, _StopAt(3, Learner.stop)]
    learn.fine_tune(2)
    assert len(obs.runs) == 1 and learn.run.end_reason == "stopped"


def test_reversed_slice_runs_like_fastai_and_warns_once():
    learn = three_group_learner()
    obs = _PeakLrs()
    learn.observers.append(obs)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        learn.fit_one_cycle(4, lr_max=slice(1e-2, 1e-4))
    msgs = [str(x.message) for x in w if issubclass(x.category, UserWarning)]
    assert len(msgs) == 1 and "\n" not in msgs[0] and "higher learning rate" in msgs[0]
    assert [x.filename for x in w if issubclass(x.category, UserWarning)] == [__file__], "it names the caller's line"
    np.testing.assert_allclose(obs.peak, [1e-2, 1e-3, 1e-4], rtol=1e-12)


def test_fit_constant_lr_and_epoch_values():
    learn = make_learner()
    learn.fit(3, 2e-3)
    rec = learn.recorder
    assert set(rec.lrs) == {2e-3}
    assert rec.metric_names == ["epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "time"]
    assert len(rec.values) == 3 and all(len(v) == 4 for v in rec.values)
    for tl, vl, acc, err in rec.values:
        assert 0 < tl < 3 and 0 < vl < 3 and acc + err == pytest.approx(1)
    assert rec.values[-1][0] == pytest.approx(rec.losses[-1])  # train_loss: the smoothed loss, as fastai
    assert rec.iters == [len(learn.dls.train) * i for i in (1, 2, 3)]


def test_one_cycle_at_suggested_lr_reaches_95_percent_on_digits():
    learn = Learner(digits(), mlp(1), metrics=accuracy, device="cpu")
    lr_min, lr_steep = learn.lr_find()
    learn.fit_one_cycle(8, lr_max=slice(lr_min, lr_steep))  # how fast: benchmarks/overhead.py, not a timed test
    assert learn.recorder.values[-1][2] >= 0.95, (lr_min, lr_steep, learn.recorder.values[-1])


def test_valid_values_are_sample_weighted_means():
    x, y = torch.randn(100, 64), torch.randint(0, 10, (100,))
    dls = DataLoaders.from_tensors(x, y, x[:70], y[:70], bs=32)  # valid batches of 32, 32, 6
    learn = Learner(dls, mlp(), metrics=accuracy, device="cpu")
    learn.fit(1, 1e-3)
    learn.model.eval()
    with torch.no_grad():
        out = learn.model(x[:70])
    want_loss = nn.functional.cross_entropy(out, y[:70]).item()
    want_acc = (out.argmax(1) == y[:70]).float().mean().item()
    assert learn.recorder.values[0][1] == pytest.approx(want_loss, rel=1e-5)
    assert learn.recorder.values[0][2] == pytest.approx(want_acc, rel=1e-6)


def test_no_host_device_sync_per_batch(monkeypatch):
    """lrwidget's own reads of device values happen a few times per fit, not once per batch.

    (torch's single-tensor AdamW on CPU reads its step counter itself; only our calls count.)
    """
    import sys

    learn = make_learner()
    learn.fit(1, 1e-3)
    counts = {"n": 0}
    for name in ("item", "cpu", "tolist", "__float__", "numpy"):
        orig = getattr(torch.Tensor, name)

        def wrapped(self, *a, _orig=orig, **k):
            counts["n"] += "lrwidget" in sys._getframe(1).f_code.co_filename
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    learn.fit(4, 1e-3)
    assert 4 * len(learn.dls.train) >= 80
    assert 1 <= counts["n"] <= 4 * 4, counts  # epoch-end reads exist, and are counted


def test_observer_events():
    seen = []

    class Obs(Observer):
        def fit_start(self, learn):
            seen.append(("start", learn.run.kind, learn.run.total))

        def batch_end(self, learn):
            seen.append("b")

        def epoch_end(self, learn):
            seen.append(("epoch", learn.run.epoch))

        def fit_end(self, learn, error):
            seen.append(("end", error, learn.run.end_reason))

    learn = make_learner()
    learn.observers.append(Obs())
    learn.fit(2, 1e-3)
    n = len(learn.dls.train)
    assert seen[0] == ("start", "fit", 2 * n)
    assert seen.count("b") == 2 * n
    assert [s for s in seen if isinstance(s, tuple) and s[0] == "epoch"] == [("epoch", 0), ("epoch", 1)]
    assert seen[-1] == ("end", None, "completed")


def test_stop_during_fit_keeps_trained_weights():
    learn = make_learner()
    w0 = learn.model[0].weight.detach().clone()
    learn.observers.append(_StopAt(3, Learner.stop))
    learn.fit_one_cycle(5, 1e-2)
    assert learn.run.end_reason == "stopped" and learn.recorder.n_batches == 3
    assert not torch.equal(w0, learn.model[0].weight)


def test_error_during_fit_keeps_trained_weights():
    learn = make_learner()
    w0 = learn.model[0].weight.detach().clone()
    learn.observers.append(_StopAt(3, _raise(RuntimeError("mid-fit"))))
    with pytest.raises(RuntimeError, match="mid-fit"):
        learn.fit(1, 1e-2)
    assert learn.run.end_reason == "error"
    assert not torch.equal(w0, learn.model[0].weight)


@pytest.mark.parametrize("mp", ["bf16", "fp16"])
def test_mixed_precision_trains(mp):
    learn = Learner(digits(), mlp(), metrics=accuracy, device="cpu", mixed_precision=mp)
    learn.fit_one_cycle(3, 1e-2)
    assert learn.recorder.values[-1][2] > 0.85


@pytest.mark.parametrize("mp", [None, "fp16"])
def test_the_fused_adamw_cuda_gets_by_default_restores_and_scales(mp):
    """CUDA's default optimizer is torch's fused AdamW ('step' kept beside the weights, the grad scaler's inputs
    taken inside the kernel); torch runs it on the CPU too, so its lr_find restore and fp16 path are tested here."""
    from lrwidget.core.optim import default_opt_func

    learn = make_learner(mixed_precision=mp, opt_func=partial(default_opt_func, device=torch.device("cuda")))
    assert all(g["fused"] for g in learn.opt.param_groups)
    learn.fit(1, 1e-3)
    before = state_of(learn)
    res = learn.lr_find()
    assert_same(before, state_of(learn))
    learn.fit_one_cycle(3, res.lr_steep)
    assert learn.recorder.values[-1][2] > 0.9


def test_batch_kinds_lists_and_dicts():
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))

    class DictModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 10)

        def forward(self, pixels):
            return self.lin(pixels)

    as_list = [[x[i : i + 16], y[i : i + 16]] for i in range(0, 64, 16)]
    Learner(DataLoaders(as_list, as_list), mlp(), device="cpu").fit(1)
    as_dict = [{"pixels": x[i : i + 16], "labels": y[i : i + 16]} for i in range(0, 64, 16)]
    learn = Learner(DataLoaders(as_dict, as_dict), DictModel(), device="cpu")
    learn.fit(1)
    assert len(learn.recorder.losses) == 4


class Sample(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor


def test_namedtuple_batches_as_torch_collates_them():
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    ds = [Sample(x[i], y[i]) for i in range(64)]
    dl = torch.utils.data.DataLoader(ds, batch_size=16)
    assert isinstance(next(iter(dl)), Sample)
    learn = Learner(DataLoaders(dl, dl), mlp(), device="cpu")
    learn.fit(1)
    assert len(learn.recorder.losses) == 4 and math.isfinite(learn.recorder.values[0][1])


class Jitter(torch.utils.data.Dataset):
    """Digits with random noise drawn in the loader's worker processes."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn(64), self.y[i]


def test_training_after_lr_find_is_exact_with_persistent_workers():
    """lr_find ends the worker processes it started, whose random state it cannot copy back."""
    ds = digits().train.dataset
    x, y = ds.tensors

    def run(find: bool) -> dict:
        dl = torch.utils.data.DataLoader(
            Jitter(x, y),
            batch_size=256,
            shuffle=True,
            num_workers=1,
            persistent_workers=True,
            generator=torch.Generator().manual_seed(0),
        )
        learn = Learner(DataLoaders(dl), mlp(seed=1), device="cpu")
        torch.manual_seed(0)
        if find:
            learn.lr_find(num_it=8, show_plot=False)
            assert dl._iterator is None, "lr_find's workers were ended"
        learn.fit(1, 1e-3)
        return learn.model.state_dict()

    assert_same(run(False), run(True))


# -- bad input ---------------------------------------------------------------------------------------


def test_empty_training_data():
    empty = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.zeros(0, 64), torch.zeros(0)), batch_size=8
    )
    with pytest.raises(ValueError, match="training data is empty"):
        DataLoaders(empty)
    with pytest.raises(ValueError, match="training data is empty"):
        Learner(([],), mlp())
    with pytest.raises(TypeError, match="wrap it in a DataLoader"):
        DataLoaders(torch.utils.data.TensorDataset(torch.zeros(4, 64), torch.zeros(4)))


@pytest.mark.parametrize(
    "bad",
    [0, -1e-3, math.nan, math.inf, slice(0, 1e-2), slice(1e-4, math.nan), slice(None, -1.0), slice(1e-4, math.inf)],
)
def test_bad_lr_max(bad):
    learn = make_learner()
    with pytest.raises(ValueError, match="lr_max"):
        learn.fit_one_cycle(1, lr_max=bad)
    with pytest.raises(ValueError, match="lr"):
        learn.fit(1, bad)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_bad_n_epoch(bad):
    learn = make_learner()
    with pytest.raises(ValueError, match="n_epoch must be a whole number >= 1"):
        learn.fit_one_cycle(bad, 1e-3)
    with pytest.raises(ValueError, match="n_epoch"):
        learn.fit(bad)


def test_wrong_output_shape_names_both_shapes():
    model = nn.Sequential(nn.Linear(64, 5))  # 5 outputs, 10 classes in the target
    learn = Learner(digits(), model, device="cpu")
    with pytest.raises(ValueError, match=r"\(64, 5\).*\(64,\).*class 9"):
        learn.fit(1)
    model = nn.Sequential(nn.Linear(64, 10), nn.Flatten(0))  # (640,) for targets (64,)
    with pytest.raises(ValueError, match=r"\(640,\).*\(64,\)"):
        Learner(digits(), model, device="cpu").lr_find()
    x, y = torch.randn(32, 4), torch.randn(32)
    reg = Learner(DataLoaders.from_tensors(x, y, bs=8), nn.Linear(4, 2), device="cpu")  # (8, 2) vs (8,)
    with pytest.raises(ValueError, match=r"MSELossFlat.*\(8, 2\).*\(8,\).*one output per target value"):
        reg.fit(1)
    reg = Learner(DataLoaders.from_tensors(x, y, bs=8), nn.Linear(4, 2), device="cpu", loss_func=nn.MSELoss())
    with pytest.raises(ValueError, match=r"MSELoss.*\(8, 2\).*\(8,\).*needs equal shapes"):
        reg.fit(1)


def test_a_float_target_meets_one_output_per_sample_as_fastais_mseflat():
    """vision_learner infers n_out=1 for targets of shape (N,): the default loss flattens both, as fastai's."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    learn = Learner(DataLoaders.from_tensors(x, y, x, y, bs=16), nn.Linear(4, 1), device="cpu")
    learn.fit(20, 1e-1)
    assert type(learn.loss_func).__name__ == "MSELossFlat" and learn.recorder.values[-1][1] < 0.05


@pytest.mark.parametrize("batch", [42, "text", None, object()])
def test_bad_batch_type(batch):
    learn = Learner(DataLoaders([batch]), mlp(), device="cpu")
    with pytest.raises(TypeError, match=rf"batch must be a tensor.*tuple, list or dict.*got {type(batch).__name__}\b"):
        learn.fit(1)


def test_single_tensor_batch_has_no_target():
    learn = Learner(DataLoaders([torch.randn(8, 64)]), mlp(), device="cpu")
    with pytest.raises(ValueError, match="no target"):
        learn.fit(1)


def test_bad_learner_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        Learner(digits(), "resnet")
    with pytest.raises(ValueError, match="mixed_precision"):
        Learner(digits(), mlp(), mixed_precision="fp8")
    with pytest.raises(ValueError, match=r"wd must be a finite number >= 0.*got -1\b"):
        Learner(digits(), mlp(), wd=-1)


# -- save and load ----------------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path):
    a = make_learner()
    a.fit(1, 1e-3)
    path = a.save(tmp_path / "stage1")
    assert path.name == "stage1.pth"
    b = make_learner(seed=9)
    b.load(tmp_path / "stage1")
    assert_same(a.model.state_dict(), b.model.state_dict())
    assert_same(a.opt.state_dict()["state"], b.opt.state_dict()["state"])


def test_load_keeps_the_optimizers_own_implementation(tmp_path):
    """A state saved from a foreach (CPU) AdamW loads into a fused one (CUDA's default) and stays fused."""
    a = make_learner(opt_func=lambda groups: torch.optim.AdamW(groups, foreach=False))
    a.fit(1, 1e-3)
    path = a.save(tmp_path / "a")
    b = make_learner(seed=1, opt_func=lambda groups: torch.optim.AdamW(groups, fused=True))
    b.load(path)
    assert all(g["fused"] is True and g["foreach"] is None for g in b.opt.param_groups)
    assert_same(a.opt.state_dict()["state"], b.opt.state_dict()["state"])
    b.fit(1, 1e-3)  # the fused kernel takes the loaded state


def test_load_refuses_another_model_or_optimizer_layout_and_loads_nothing(tmp_path):
    learn = make_learner()
    learn.fit(1, 1e-3)
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    one_group = make_learner(seed=1, wd_bn_bias=True)  # one optimizer group where learn has two
    one_group.fit(1, 1e-3)
    path = one_group.save(tmp_path / "one")
    with pytest.raises(ValueError, match=r"sizes \[6\].*with_opt=False"):
        learn.load(path)
    assert_same(weights, learn.model.state_dict())
    learn.load(path, with_opt=False)
    assert_same(one_group.model.state_dict(), learn.model.state_dict())
    wide = Learner(digits(), nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), device="cpu")
    weights = {k: v.clone() for k, v in wide.model.state_dict().items()}
    with pytest.raises(ValueError, match=r"another model.*0\.weight.*saved \(64, 64\).*here \(32, 64\)"):
        wide.load(learn.save(tmp_path / "narrow"))
    assert_same(weights, wide.model.state_dict())


def test_load_rejects_files_that_are_not_saved_learners(tmp_path):
    learn = make_learner()
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a file saved by Learner.save"):
        learn.load(junk)
    plain = tmp_path / "plain.pth"
    torch.save(learn.model.state_dict(), plain)
    with pytest.raises(ValueError, match="not a file saved by Learner.save"):
        learn.load(plain)
    with pytest.raises(FileNotFoundError):
        learn.load(tmp_path / "missing.pth")


def test_a_result_equals_what_it_unpacks_to_as_fastais_namedtuple():
    import copy

    res = make_learner().lr_find(num_it=30, show_plot=False)
    assert res == (res.lr_min, res.lr_steep) and res == copy.deepcopy(res) and hash(res) == hash(tuple(res))
    losses = res.losses.copy()
    losses[3] += 1
    other = res._replace(losses=losses)
    assert res != other and res != (res.lr_min, 1.0)


def test_partial_metrics_are_named_by_their_function_and_accumulating_ones_refused():
    def top_k(out, y, k=1):
        return (out.topk(k, 1).indices == y[:, None]).any(1).float().mean()

    learn = Learner(digits(), mlp(), metrics=[partial(top_k, k=3)], device="cpu")
    learn.fit(1, 1e-3)
    assert learn.recorder.metric_names == ["epoch", "train_loss", "valid_loss", "top_k", "time"]

    class Accumulating:  # fastai's AccumMetric protocol (Precision, F1Score, ...)
        name = "f1_score"

        def reset(self): ...
        def accumulate(self, learn): ...

        value = 0.0

        def __call__(self, out, y): ...

    with pytest.raises(TypeError, match=r"f1_score.*accumulates over the whole validation.*pass a function metric"):
        Learner(digits(), mlp(), metrics=Accumulating(), device="cpu")
