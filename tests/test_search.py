"""lr_search and lr_find(repeats=k): the maths with numbers, the exact restore, the budget, a plateau, the band."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrwidget import DataLoaders, Learner, LRFindResult, LRSearchResult, accuracy
from lrwidget.core.events import Observer
from lrwidget.core.range_test import median_of, spread_of
from lrwidget.core.search import decide, long_rates, made_progress, pick, plan, usable_range
from lrwidget.data import digits

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LRS = np.geomspace(1e-7, 10, 100)


# -- the maths -------------------------------------------------------------------------------------------------


def test_the_range_ends_where_the_loss_rises_a_tenth_above_its_start_past_the_minimum():
    x = np.log10(LRS)
    losses = np.where(x < -3, 2.0, np.where(x < -1, 2.0 - 0.75 * (x + 3), 0.5 + 3 * (x + 1)))
    lo, hi = usable_range(LRS, losses, 100)
    # the first point past the minimum (lr 0.1) above 2.0 * 1.1 = 2.2: 0.5 + 3 (x + 1) > 2.2 at x > -0.4333
    first = LRS[np.flatnonzero((x > -1) & (losses > 2.2))[0]]
    assert hi == first and 10**-0.4333 < hi < 10 ** (-0.4333 + 0.08)  # within one step of the curve (0.08 decade)
    assert lo == pytest.approx(hi / 10**2.5)
    assert usable_range(LRS, losses, 100, decades=3)[0] == pytest.approx(hi / 1e3)


def test_on_a_flat_curve_the_range_reaches_up_to_the_rise():
    rng = np.random.default_rng(0)
    losses = 0.693 + 0.002 * rng.standard_normal(100)  # a plateau: the minimum lands anywhere in the noise
    losses[LRS > 0.1] += np.log10(LRS[LRS > 0.1] / 0.1)  # rises from 0.1 on
    lo, hi = usable_range(LRS, losses, 100)
    assert 0.1 < hi < 0.2  # 0.693 * 1.1 = 0.762: log10(lr / 0.1) > 0.069 at lr > 0.117
    # a curve that never rises: the last point the suggestions use (the last 5 are left out)
    assert usable_range(LRS, np.linspace(2, 1, 100), 100)[1] == LRS[-6]


def test_a_too_short_curve_gives_the_range_below_its_last_finite_point():
    assert usable_range(LRS[:4], [1.0, 0.9, 0.8, math.nan], 100) == pytest.approx((LRS[2] / 10**2.5, LRS[2]))


def test_the_plan_gives_a_third_of_the_budget_to_the_sweep_and_never_exceeds_it():
    assert plan(110, 1.5) == (8, 6, 55)  # 165 steps: 2 x 55 long, 8 x 6 = 48 sweep, 157 <= 165
    assert plan(10, 1.5) == (5, 1, 5)  # 15 steps: too few for 8 sweep probes
    assert plan(1000, 3.0) == (8, 125, 1000)  # budget 3: the long probes are whole fits
    for steps in (3, 7, 22, 63, 110, 189, 997):
        for budget in (0.3, 1.0, 1.5, 2.0):
            if math.floor(budget * steps) < 3:
                with pytest.raises(ValueError, match="too few"):
                    plan(steps, budget)
                continue
            n, s, long = plan(steps, budget)
            assert n * s + 2 * long <= budget * steps and n >= 1 and s >= 1 and long >= s


def test_progress_is_a_tenth_under_the_start_loss():
    assert made_progress(2.3, [2.2, 2.0, math.inf])  # 2.0 < 2.3 - 0.23
    assert not made_progress(2.3, [2.2, 2.1, math.nan])
    assert not made_progress(0.693, [0.69, 0.70, 0.71])  # a plateau
    assert made_progress(0.693, [0.69, 0.6], progress=0.1)
    assert not made_progress(math.nan, [0.1])


def test_the_long_probes_go_either_side_of_the_sweeps_best_or_below_the_rise():
    lrs, scores = [1e-3, 1e-2, 1e-1, 1.0], [2.0, 0.5, 0.7, math.nan]
    assert long_rates(lrs, scores, 2.0, progressed=True) == pytest.approx([10**-1.75, 10**-2.25])
    assert long_rates(lrs, scores, 2.0, progressed=False) == pytest.approx([0.2, 0.02])


def test_the_pick_is_the_lowest_finite_score():
    assert pick([1e-3, 1e-2, 1e-1], [0.3, 0.2, math.inf]) == 1e-2
    assert pick([1e-3, 1e-2], [math.nan, math.inf]) == 1e-3


def test_the_search_decides_for_the_better_long_probe_or_between_two_it_cannot_tell_apart_a_sixth_decade_lower():
    lean = 10 ** (1 / 6)
    assert decide([1e-2, 1e-3], [0.5, 0.6]) == pytest.approx(1e-2 / lean)  # 20% apart: the better
    assert decide([1e-2, 1e-3], [0.6, 0.5]) == pytest.approx(1e-3 / lean)
    assert decide([1e-2, 1e-3], [0.50, 0.52]) == pytest.approx(10**-2.5 / lean)  # 4%: between them
    assert decide([1e-2, 1e-3], [0.52, 0.50], tie=0.03) == pytest.approx(1e-3 / lean)
    assert decide([1e-2, 1e-3], [math.inf, 0.5]) == pytest.approx(1e-3 / lean)  # a diverged probe ties with nothing
    assert decide([1e-2, 1e-3], [math.nan, math.nan]) == pytest.approx(1e-3 / lean)
    assert decide([1e-2], [0.5], lean=0) == 1e-2


def curve(y, end="completed"):
    y = np.asarray(y, dtype=float)
    return LRS[: len(y)], y, y + 0.1, end


def test_the_median_curve_counts_an_ended_repeat_as_above_every_loss_and_ends_where_the_median_does():
    x, med, raw, end, extra = median_of([curve([1.0, 2, 3, 4]), curve([2.0, 3, 4], "diverged"), curve([3.0, 4, 5, 6])])
    np.testing.assert_array_equal(med, [2, 3, 4, 6])
    lo, hi = extra["band"]
    np.testing.assert_array_equal(lo, [1, 2, 3, 4])
    np.testing.assert_array_equal(hi, [3, 4, 5, np.nan])  # one repeat had ended: no highest loss there
    np.testing.assert_array_equal(x, LRS[:4]) and np.testing.assert_allclose(raw, med + 0.1)
    assert end == "diverged"
    curves = [curve([1.0, 2]), curve([2.0, 3, 4, 5]), curve([3.0, 4, math.nan], "non-finite loss")]
    x, med, _, end, extra = median_of(curves)
    np.testing.assert_array_equal(med, [2, 3])  # from the third point on, two of three had ended
    assert len(x) == len(extra["band"][0]) == len(extra["band"][1]) == 2 and end == "diverged"
    assert median_of([curve([1.0, 2]), curve([1.0], "stopped")])[3] == "stopped"


def test_the_spread_is_max_over_min_of_the_repeats_that_gave_one():
    s = spread_of([{"lr_min": 1e-3, "valley": None}, {"lr_min": 4e-3, "valley": 2e-3}, {"lr_min": 2e-3}])
    assert s["lr_min"] == pytest.approx(4.0) and s["valley"] == 1.0
    assert spread_of([{"slide": None}])["slide"] is None


# -- on a learner ----------------------------------------------------------------------------------------------


def mlp_learner(seed: int = 0, accum_steps: int = 1, valid: bool = True) -> Learner:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    dls = digits(bs=64, seed=seed, valid_pct=0.2 if valid else 0.0)
    return Learner(dls, model, metrics=[accuracy], device="cpu", accum_steps=accum_steps)


def weights(learn: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learn.model.state_dict().values()]


@pytest.mark.parametrize("with_find", [False, True])
def test_training_after_lr_search_is_training_without_it(with_find):
    a, b = mlp_learner(), mlp_learner()
    if with_find:  # the search uses the learner's curve; else it runs lr_find itself
        a.lr_find(show_plot=False)
        b.lr_find(show_plot=False)
    s = a.lr_search(epochs=2)
    assert (s.find_steps > 0) != with_find and s.find is a.recorder.lr_find_result
    a.fit_one_cycle(2, 1e-2)
    b.fit_one_cycle(2, 1e-2)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))
    assert a.recorder.values == b.recorder.values
    sa, sb = a.opt.state_dict()["state"], b.opt.state_dict()["state"]
    assert all(torch.equal(sa[k][n], sb[k][n]) for k in sa for n in sa[k])


@pytest.mark.parametrize("budget, accum", [(1.5, 1), (0.5, 1), (1.0, 2)])
def test_the_cost_is_the_probes_steps_over_the_fits_and_stays_within_the_budget(budget, accum):
    learn = mlp_learner(accum_steps=accum)
    s = learn.lr_search(epochs=3, budget=budget)
    fit_steps = math.ceil(len(learn.dls.train) / accum) * 3
    assert s.fit_steps == fit_steps and s.budget == budget
    assert s.cost == sum(s.steps) / fit_steps <= budget
    assert len(s.lrs) == len(s.scores) == len(s.steps) == len(s.phases) == 10
    assert s.phases == ("sweep",) * 8 + ("long",) * 2
    assert any(math.isclose(s.best * 10 ** (1 / 6), lr) for lr in s.lrs[8:])  # a sixth of a decade below one
    assert s.end_reason == "completed" and s.judged_by == "valid_loss"
    assert all(s.range[0] <= lr <= s.range[1] for lr in s.lrs[:8])


def test_without_validation_data_the_probes_are_judged_by_training_loss():
    s = mlp_learner(valid=False).lr_search(epochs=2)
    assert s.judged_by == "train_loss" and all(math.isfinite(x) for x in s.scores[:4])
    assert math.isfinite(s.best) and s.best > 0


def test_the_result_is_frozen_and_goes_to_json():
    import json

    s = mlp_learner().lr_search(epochs=2)
    assert isinstance(s, LRSearchResult)
    with pytest.raises(AttributeError):
        s.best = 1.0
    d = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    assert d["best"] == s.best and d["lrs"] == list(s.lrs) and d["find"]["format"] == "lrwidget.LRFindResult"


class StopAfter(Observer):
    """Asks the learner to stop after `n` training batches of the run it is in."""

    def __init__(self, n: int):
        self.n, self.seen = n, 0

    def batch_end(self, learn) -> None:
        self.seen += 1
        if self.seen == self.n:
            learn.stop()


def test_a_stop_ends_the_search_early_at_its_start():
    a, b = mlp_learner(), mlp_learner()
    a.lr_find(show_plot=False)
    b.lr_find(show_plot=False)
    a.observers.append(StopAfter(20))  # inside the fourth probe of the sweep (6 steps each)
    s = a.lr_search(epochs=5)
    a.observers.clear()
    assert s.end_reason == "stopped" and len(s.lrs) == 4 and s.steps[-1] < s.steps[0]
    a.fit_one_cycle(1, 1e-2)
    b.fit_one_cycle(1, 1e-2)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))


def test_bad_arguments_are_refused_before_anything_runs():
    learn = mlp_learner()
    with pytest.raises(ValueError, match="epochs"):
        learn.lr_search(epochs=0)
    with pytest.raises(ValueError, match="budget"):
        learn.lr_search(budget=-1)
    with pytest.raises(TypeError, match="unknown options"):
        learn.lr_search(sweeps=3)
    assert learn.recorder.lr_find_result is None


# -- a plateau ---------------------------------------------------------------------------------------------------


def parity_learner(seed: int = 0) -> Learner:
    """Sparse parity of 3 of 16 +-1 bits: the loss sits at ln 2 until it drops at once."""
    g = torch.Generator().manual_seed(3000 + seed)
    x = torch.randint(0, 2, (3072, 16), generator=g).float() * 2 - 1
    y = (x[:, :3] < 0).sum(1).remainder(2)
    train = DataLoader(
        TensorDataset(x[:2048], y[:2048]),
        batch_size=64,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2))
    return Learner(DataLoaders(train, DataLoader(TensorDataset(x[2048:], y[2048:]), batch_size=256)), model,
                   metrics=[accuracy], device="cpu")  # fmt: skip


def test_on_a_plateau_lr_search_escapes_where_find_lrs_markers_stay_at_chance():
    learn = parity_learner()
    res = learn.lr_find(show_plot=False)
    s = learn.lr_search(epochs=5)
    assert s.plateau  # the sweep's short fits made no progress

    def fit(lr) -> float:
        other = parity_learner()
        other.fit_one_cycle(5, lr)
        return other.recorder.values[-1][2]

    assert max(res.lr_min, res.lr_steep) < 1e-5  # the curve's flat noise: the markers' fit stays at chance
    assert fit(slice(res.lr_min, res.lr_steep)) < 0.6
    assert 1e-2 < s.best < 1 and fit(s.best) > 0.95  # the fit at the rate found solves the task


# -- repeated range tests ----------------------------------------------------------------------------------------


class Curves(Observer):
    """Each lr_find run's losses and probe, as the repeats go."""

    def __init__(self):
        self.losses, self.probes = [], []

    def fit_end(self, learn, error):
        self.losses.append(np.array(learn.recorder.losses))
        self.probes.append(learn.run.probe)


def test_repeats_give_the_median_its_band_and_the_suggestions_spread():
    learn = mlp_learner()
    before, rng = weights(learn), torch.get_rng_state()
    one = learn.lr_find(show_plot=False)
    seen = Curves()
    learn.observers.append(seen)
    r = learn.lr_find(show_plot=False, repeats=3)
    assert seen.probes == [(1, 3, "repeat"), (2, 3, "repeat"), (3, 3, "repeat")] and r.repeats == 3
    assert all(w.equal(v) for w, v in zip(weights(learn), before)) and torch.equal(torch.get_rng_state(), rng)
    np.testing.assert_array_equal(seen.losses[0], one.losses)  # the first repeat: the learner's own batch order
    assert not np.array_equal(seen.losses[1][:50], seen.losses[2][:50])  # the others: their own
    lo, hi = r.band
    assert len(lo) == len(hi) == len(r.losses) == len(r.lrs)
    ok = np.isfinite(hi)
    assert np.all(lo <= r.losses) and np.all(r.losses[ok] <= hi[ok])
    assert r.spread.keys() == {"lr_min", "lr_steep", "valley", "slide"}
    assert all(v is None or v >= 1 for v in r.spread.values()) and r.spread["lr_min"] is not None
    assert learn.recorder.lr_find_result is r and one.band is None and one.spread == {} and one.repeats == 1
    again = learn.lr_find(show_plot=False, repeats=3)
    np.testing.assert_array_equal(again.losses, r.losses)  # the same repeats give the same curve: reproducible
    back = LRFindResult.from_dict(r.to_dict())
    assert (
        back == r and back.repeats == 3 and all(np.array_equal(a, b, equal_nan=True) for a, b in zip(back.band, r.band))
    )
    assert dict(back.spread) == dict(r.spread)


def test_a_version_1_result_without_repeats_is_read():
    d = mlp_learner().lr_find(show_plot=False, num_it=20).to_dict()
    for k in ("band", "spread", "repeats"):
        del d[k]
    d["version"] = 1
    r = LRFindResult.from_dict(d)
    assert r.repeats == 1 and r.band is None and r.spread == {}


def test_repeats_then_training_is_training_without_it():
    a, b = mlp_learner(), mlp_learner()
    a.lr_find(show_plot=False, repeats=2, num_it=30)
    a.fit_one_cycle(1, 1e-2)
    b.fit_one_cycle(1, 1e-2)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))


def test_repeats_is_checked():
    with pytest.raises(ValueError, match="repeats must be a whole number >= 1"):
        mlp_learner().lr_find(show_plot=False, repeats=0)


# -- what observers see, and the result's round trip -------------------------------------------------------------


class Probes(Observer):
    def __init__(self):
        self.seen = []

    def fit_end(self, learn, error):
        if learn.run.kind == "fit":
            self.seen.append((learn.run.probe, learn.run.lr_max, learn.recorder.n_batches, len(learn.recorder.values)))


def test_each_probe_is_a_fit_to_observers_with_its_rate_and_place():
    learn = mlp_learner()
    learn.lr_find(show_plot=False)
    seen = Probes()
    learn.observers.append(seen)
    s = learn.lr_search(epochs=3)
    assert [p for p, *_ in seen.seen] == [(i + 1, 10, ph) for i, ph in enumerate(s.phases)]
    assert [lr for _, lr, *_ in seen.seen] == list(s.lrs) and [n for *_, n, _ in seen.seen] == list(s.steps)
    assert all(rows >= 1 for *_, rows in seen.seen), "each probe ends with its validation row"
    learn.fit_one_cycle(1, slice(1e-3, 2e-2))
    assert learn.run.probe is None and learn.run.lr_max == 2e-2


def test_the_result_round_trips_through_json():
    import json

    s = mlp_learner().lr_search(epochs=2, budget=1.0)
    back = LRSearchResult.from_dict(json.loads(json.dumps(s.to_dict(), allow_nan=False)))
    assert back.best == s.best and back.lrs == s.lrs and back.steps == s.steps and back.find == s.find
    with pytest.raises(ValueError, match="needs the keys"):
        LRSearchResult.from_dict({"best": 1.0})


@pytest.mark.slow  # two processes
def test_lr_search_and_repeats_in_two_processes_leave_the_kernels_learner_as_it_was():
    learn = mlp_learner()
    learn.num_processes = 2
    try:
        before = weights(learn)
        r = learn.lr_find(show_plot=False, repeats=2, num_it=40)
        assert r.repeats == 2 and r.band is not None and len(r.lrs) > 10
        seen = Probes()
        learn.observers.append(seen)
        s = learn.lr_search(epochs=2, budget=1.0)
        assert s.end_reason == "completed" and s.cost <= 1.0 and s.find == r and len(seen.seen) == len(s.lrs)
        assert all(w.equal(v) for w, v in zip(weights(learn), before))
    finally:
        learn.close()


def test_a_fastai_learner_refuses_lr_search_and_repeats_saying_so():
    pytest.importorskip("fastai")
    from fastai.learner import Learner as FastaiLearner

    from lrwidget.integrations.fastai_adapter import wrap

    dls = digits()
    fl = FastaiLearner(_fastai_dls(dls), nn.Sequential(nn.Linear(64, 10)), loss_func=nn.CrossEntropyLoss())
    adapter = wrap(fl)
    with pytest.raises(NotImplementedError, match="lr_search runs on lrwidget's own Learner"):
        adapter.lr_search(epochs=1)
    with pytest.raises(NotImplementedError, match=r"lr_find\(repeats=3\) runs on lrwidget's own Learner"):
        adapter.lr_find(repeats=3)


def _fastai_dls(dls):
    from fastai.data.core import DataLoaders as FastaiDataLoaders

    return FastaiDataLoaders(dls.train, dls.valid)


def test_lr_search_runs_in_mixed_precision_and_ends_at_its_start():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    learn = Learner(digits(), model, metrics=[accuracy], device="cpu", mixed_precision="bf16")
    before = weights(learn)
    s = learn.lr_search(epochs=2, budget=1.0)
    assert s.end_reason == "completed" and s.cost <= 1.0 and all(math.isfinite(x) for x in s.scores[:3])
    assert all(torch.equal(a, b) for a, b in zip(weights(learn), before))


def test_lr_search_on_a_model_that_computes_its_own_loss():
    from test_hf import bert, halves

    learn = Learner(halves(bs=32), bert(), metrics=accuracy, device="cpu")  # dict batches with labels: out.loss
    before = weights(learn)
    s = learn.lr_search(epochs=1, budget=1.0)
    assert learn.loss_func is None, "the model's own loss, not one lrwidget chose"
    assert s.end_reason == "completed" and s.judged_by == "valid_loss" and math.isfinite(min(s.scores))
    assert all(torch.equal(a, b) for a, b in zip(weights(learn), before))


class SearchBoom(Exception):
    pass


def test_an_interrupt_or_an_error_in_a_probe_ends_the_search_with_the_state_back():
    import signal

    from test_interrupts import CtrlC

    learn = mlp_learner()
    learn.lr_find(show_plot=False)
    before, rng = weights(learn), torch.get_rng_state()
    learn.observers.append(CtrlC(30))  # Ctrl-C inside the fifth probe of the sweep
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            learn.lr_search(epochs=5)
    finally:
        signal.signal(signal.SIGINT, old)
        learn.observers.clear()
    assert learn.run.end_reason == "interrupted" and not learn.busy
    assert all(torch.equal(a, b) for a, b in zip(weights(learn), before)) and torch.equal(torch.get_rng_state(), rng)
    calls = []

    def failing(out, y):
        calls.append(1)
        if len(calls) == 40:
            raise SearchBoom("the loss failed in a probe")
        return nn.functional.cross_entropy(out, y)

    learn.loss_func = failing
    with pytest.raises(SearchBoom, match="the loss failed in a probe"):
        learn.lr_search(epochs=5)
    assert all(torch.equal(a, b) for a, b in zip(weights(learn), before)) and not learn.busy
