"""Comparing rates in the widget: runs, the same start, sweeps, the runs panel, the map of rates, the history file."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from test_widget import TIMEOUT, click, make_learn, same, wait_for, weights

from lrwidget import LRWidget
from lrwidget.core.events import Observer
from lrwidget.widget.runs import MAX_LOSSES, Run, best_index, outcome, ranked, sweep_rates, thin
from lrwidget.widget.runs_panel import rate_colors, y_range
from lrwidget.widget.style import PALETTE, mix

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def learn():
    return make_learn()


@pytest.fixture
def w(learn):
    widget = LRWidget(learn, epochs=1)
    widget.lr_min, widget.lr_steep = 1e-3, 1e-2
    yield widget
    widget.stop()
    widget.close()


def fit(w: LRWidget, epochs: int | None = None) -> None:
    assert w.fit(epochs)
    w.wait(TIMEOUT)


def opt_state(learn) -> dict:
    return {i: {k: v.clone() for k, v in s.items()} for i, s in enumerate(learn.opt.state.values())}


def fake_run(i: int, valid: float, **kw) -> Run:
    names = ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    values = [[valid + 0.5, valid + 0.1, 0.8], [valid + 0.3, valid, 0.9]]
    d = dict(lr_min=1e-4 * (i + 1), lr_steep=1e-3 * (i + 1), epochs=2, code=f"run {i}", metric_names=names)
    d.update(values=values, losses=[1.0, 0.8, 0.6, 0.5], end_reason="completed", seconds=1.5, from_start=True)
    d.update(batches=[0, 1, 2, 3], n_iter=2, iters=[2, 4], start="start 1")
    return Run(**{**d, **kw})


def cells(panel) -> list:
    """The table's cells, row by row (the header first)."""
    return [c for row in panel.grid.children for c in row.children]


def cell_texts(panel) -> str:
    return " ".join(str(getattr(c, "value", "")) for c in cells(panel))


# -- the pure parts ----------------------------------------------------------------------------------------------


def test_thin_keeps_at_most_the_limit_evenly_with_both_ends():
    idx, v = thin(np.arange(10.0), 20)
    assert idx == list(range(10)) and v == list(range(10))
    idx, v = thin(np.arange(10_001.0))
    assert len(v) == len(idx) <= MAX_LOSSES and len(v) > 0.99 * MAX_LOSSES
    assert idx[0] == 0 and idx[-1] == 10_000 and v == [float(i) for i in idx]
    steps = np.diff(idx)
    assert steps.min() >= 4 and steps.max() <= 6, "evenly spaced"


def test_sweep_rates_are_five_log_even_over_a_decade_each_side():
    r = sweep_rates(0.02)
    assert len(r) == 5 and r[2] == pytest.approx(0.02)
    assert r[0] == pytest.approx(0.002) and r[-1] == pytest.approx(0.2)
    assert np.allclose(np.diff(np.log10(r)), 0.5)


def test_best_is_the_lowest_validation_loss_and_ignores_runs_without_one():
    runs = [fake_run(0, 0.5), fake_run(1, 0.2), fake_run(2, math.nan), fake_run(3, 0.3)]
    assert best_index(runs) == 1 and math.isnan(outcome(runs[2]))
    assert best_index([fake_run(0, math.nan)]) is None and best_index([]) is None
    no_valid = fake_run(0, 0.0, values=[[0.7, math.nan, math.nan]])
    assert outcome(no_valid) == 0.7, "without validation the training loss judges"


def test_rate_colors_run_green_to_red_and_grey_for_no_outcome():
    c = rate_colors([0.5, 0.1, math.nan, 0.3])
    assert c[1] == mix(0.0) == "#218331" and c[0] == mix(1.0) == "#da2c3a" and c[2] == PALETTE[7] and c[3] not in c[:3]


def test_a_run_round_trips_through_json_with_non_finite_values():
    r = fake_run(0, 0.2, losses=[1.0, math.inf, math.nan, 0.5], values=[[1.0, math.nan, math.nan]])
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    back = Run.from_dict(d)
    assert back.losses[0] == 1.0 and math.isinf(back.losses[1]) and math.isnan(back.losses[2])
    assert math.isnan(back.values[0][1]) and back.lr_min == r.lr_min and back.code == r.code


# -- runs -----------------------------------------------------------------------------------------------------


def test_every_fit_is_recorded_as_a_run_with_its_fields(w, learn):
    fit(w, 2)
    fit(w, 1)
    assert len(w.runs) == 2
    r, rec = w.runs[1], learn.recorder
    assert (r.lr_min, r.lr_steep, r.epochs) == (1e-3, 1e-2, 1) and r.code == w.code
    assert r.metric_names == rec.metric_names and r.values == rec.values and r.end_reason == "completed"
    assert r.losses == rec.losses.tolist() and r.batches == list(range(len(rec.losses)))
    assert r.n_iter == len(learn.dls.train) and r.iters == rec.iters and 0 < r.seconds < 60
    assert not r.from_start and not r.loaded and not r.sweep
    assert len(w.runs[0].values) == 2 and w.runs[0].values[0] != r.values[0], "the second fit went on from the first"


def test_a_long_run_keeps_at_most_2000_loss_points_evenly():
    learn = make_learn(bs=1)
    w = LRWidget(learn, epochs=2)
    w.lr_min, w.lr_steep = 1e-4, 1e-3
    fit(w)
    r, n = w.runs[0], len(learn.recorder.losses)
    assert n > MAX_LOSSES and len(r.losses) <= MAX_LOSSES and r.batches[0] == 0 and r.batches[-1] == n - 1
    assert r.losses == learn.recorder.losses[r.batches].tolist()


def test_a_stopped_fit_is_recorded_with_its_end_reason(w, learn):
    assert w.fit(300)
    wait_for(lambda: learn.recorder.n_batches > 3)
    w.stop()
    w.wait(TIMEOUT)
    r = w.runs[-1]
    assert r.end_reason == "stopped" and r.epochs == 300 and len(r.values) < 300 and r.losses


def test_an_error_is_recorded_with_its_end_reason(w, learn):
    boom = ZeroDivisionError("user's metric failed")

    def bad_metric(out, y):
        raise boom

    learn.metrics = [bad_metric]
    assert w.fit(1)
    with pytest.raises(ZeroDivisionError) as e:
        w.wait(TIMEOUT)
    assert e.value is boom and w.runs[-1].end_reason == "error" and w.runs[-1].losses


# -- the same start ---------------------------------------------------------------------------------------------


def test_from_start_gives_identical_runs_at_the_same_rates_and_other_runs_at_others(w, learn):
    start = weights(learn)
    fit(w)  # continues nothing: the start is taken at this first Fit
    fit(w)  # goes on from the first
    w.from_start = True
    assert w.controls.from_start_box.value, "the checkbox shows the traitlet"
    fit(w)
    after_third = weights(learn)
    fit(w)
    assert w.runs[2].values == w.runs[3].values == w.runs[0].values, "bit-for-bit, as the first Fit from the start"
    assert w.runs[1].values != w.runs[0].values
    assert same(after_third, weights(learn)) and w.runs[2].from_start and not w.runs[1].from_start
    w.lr_steep = 3e-2
    fit(w)
    assert w.runs[4].values != w.runs[0].values
    w.reset()
    assert same(weights(learn), start)


def test_reset_puts_back_weights_optimizer_and_random_state(w, learn):
    with pytest.raises(RuntimeError, match=r"no start to go back to yet: click Fit once, or call w.mark_start"):
        w.reset()
    click(w.reset_button)
    assert "no start to go back to" in w.status
    fit(w)  # gives the optimizer a state; take the start after it
    w.mark_start()
    start, opt0 = weights(learn), opt_state(learn)
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    fit(w, 2)
    torch.rand(3), np.random.rand(), random.random()
    assert not same(weights(learn), start)
    click(w.reset_button)
    assert same(weights(learn), start) and "reset" in w.status
    now = opt_state(learn)
    assert now.keys() == opt0.keys() and all(same(now[i], opt0[i]) for i in now)
    assert torch.equal(torch.get_rng_state(), rng[0]) and np.array_equal(np.random.get_state()[1], rng[1])
    assert random.getstate() == rng[2]
    fit(w, 2)  # the saved start stays untouched by training after a reset: it can be put back again
    w.reset()
    assert same(weights(learn), start) and all(same(opt_state(learn)[i], opt0[i]) for i in opt0)


def test_mark_start_and_reset_are_refused_while_a_run_holds_the_learner(w, learn):
    assert w.fit(300)
    wait_for(lambda: learn.recorder.n_batches > 0)
    with pytest.raises(RuntimeError, match="busy"):
        w.mark_start()
    assert w.reset_button.disabled and w.sweep_button.disabled and not w.sweep()
    w.stop()
    w.wait(TIMEOUT)
    assert not w.reset_button.disabled


def test_the_start_is_one_host_copy_of_the_state(w, learn):
    fit(w)
    s = w.start.state
    n_params = sum(p.numel() for p in learn.model.parameters())
    saved = sum(t.numel() for t in s["model"].values())
    assert saved == n_params and all(t.device.type == "cpu" for t in s["model"].values())


# -- sweeps -----------------------------------------------------------------------------------------------------


def test_a_sweep_of_three_rates_makes_three_runs_from_the_start_and_ends_there(w, learn):
    start = weights(learn)
    w.lr_min, w.lr_steep = 2e-3, 2e-2
    assert w.sweep(lrs=[1e-3, 1e-2, 1e-1])
    w.wait(TIMEOUT)
    runs = w.runs
    assert [r.lr_steep for r in runs] == [1e-3, 1e-2, 1e-1]
    assert [r.lr_min for r in runs] == pytest.approx([1e-4, 1e-3, 1e-2]), "each slice keeps the markers' ratio"
    assert all(r.from_start and r.sweep and r.epochs == 1 and r.end_reason == "completed" for r in runs)
    assert same(weights(learn), start), "the weights are back at the start"
    fresh = make_learn()
    fresh.fit_one_cycle(1, lr_max=slice(runs[1].lr_min, runs[1].lr_steep))
    assert runs[1].values == fresh.recorder.values, "each rate trains from the very start, as a fresh learner"
    best = best_index(runs)
    assert ranked(runs) == ([0, 1, 2], best, "the 1-epoch runs from start 1")
    said = f"best of the 1-epoch runs from start 1 by validation loss: run #{best}, lr {runs[best].lr_steep:.4g}"
    assert said in w.status
    assert "sweep done: 3 rates" in w.status and "back at the start" in w.status
    click(w.runs_panel.rows[best])
    assert (w.lr_min, w.lr_steep) == (runs[best].lr_min, runs[best].lr_steep)


def test_a_sweep_without_rates_tries_five_around_lr_steep_and_says_which_rate_runs(w, learn):
    seen = []
    w.progress_label.observe(lambda c: seen.append(c["new"]), names="value")
    click(w.sweep_button)
    w.wait(TIMEOUT)
    assert [r.lr_steep for r in w.runs] == pytest.approx(sweep_rates(1e-2))
    assert any(s.startswith("sweep rate 3 of 5 · fit") for s in seen)


def test_stop_ends_a_sweep_keeping_the_runs_done_and_the_start(w, learn):
    start = weights(learn)

    class StopAtSecond(Observer):
        fits = 0

        def fit_start(self, learn):
            self.fits += 1
            if self.fits == 2:
                w.stop()

    learn.observers.append(StopAtSecond())
    assert w.sweep(lrs=[1e-3, 1e-2, 1e-1], epochs=1)
    w.wait(TIMEOUT)
    assert [r.end_reason for r in w.runs] == ["completed", "stopped"], "the third rate never starts"
    assert "sweep stopped at rate 2 of 3; the 2 runs made are kept" in w.status
    assert same(weights(learn), start) and not w.busy


def test_a_sweep_stopped_mid_way_keeps_its_runs(w, learn):
    assert w.sweep(lrs=[1e-3, 1e-2, 1e-1], epochs=40)
    wait_for(lambda: len(w.runs) == 0 and learn.recorder.n_batches > 5)
    w.stop()
    w.wait(TIMEOUT)
    assert len(w.runs) == 1 and w.runs[0].end_reason == "stopped" and "sweep stopped at rate 1 of 3" in w.status


@pytest.mark.parametrize("bad", [[], [0.1, -1], [math.nan], "0.1", [True]])
def test_a_sweep_refuses_rates_that_are_not_positive_finite_numbers(w, bad):
    with pytest.raises(ValueError, match="lrs must be a non-empty list of positive finite learning rates"):
        w.sweep(lrs=bad)
    assert not w.busy and not w.runs


# -- the panel, the map and the history ---------------------------------------------------------------------------


def test_the_panel_shows_a_line_and_a_row_per_run_and_marks_the_best(w, learn):
    assert w.runs_panel.children == (w.runs_panel.title,) and not w.runs_panel.title.value, "nothing before a run"
    w.from_start = True
    fit(w)
    first_row = w.runs_panel.rows[0]
    w.lr_steep = 3e-2
    fit(w)
    p = w.runs_panel
    assert p.rows[0] is first_row and first_row in cells(p), "a new run adds its row; the others stay"
    assert (
        p.chart.figure in p.children
        and p.grid in p.children
        and len(p.rows) == 2
        and p.rows[1].description == "slice(0.001, 0.03)"
    )
    assert p.chart.valid.labels == ["#0 slice(0.001, 0.01)", "#1 slice(0.001, 0.03)"]
    assert np.asarray(p.chart.valid.y).shape[0] == 2 and not p.chart.valid.display_legend, "the table is the legend"
    best = best_index(w.runs)
    texts = [c.value for c in cells(p) if "best" in str(getattr(c, "value", ""))]
    assert len(texts) == 1 and f"best of the 1-epoch runs from start 1: #{best} " in p.title.value
    assert [c.value for c in cells(p) if ">#1<" in str(getattr(c, "value", ""))], "a column of run numbers"
    assert cell_texts(p).count("start 1") == 2, "both began at the start"
    rates = w.chart_view.rates
    assert list(rates.x) == pytest.approx([1e-2, 3e-2]) and rates.colors[best] == mix(0.0)
    w.lr_min, w.lr_steep = 5e-4, 5e-4
    click(p.rows[0])
    assert (w.lr_min, w.lr_steep) == (1e-3, 1e-2) and "markers at run #0" in w.status


def test_the_panel_stays_readable_with_twenty_runs(w, tmp_path):
    path = tmp_path / "twenty.json"
    other = LRWidget(make_learn())
    other.runs = [fake_run(i, 0.1 + 0.01 * ((i * 7) % 20)) for i in range(20)]
    other.save_history(path)
    w.load_history(path)
    p = w.runs_panel
    assert len(p.rows) == 20 and len(set(p.chart.valid.colors)) == 20
    assert not p.chart.valid.display_legend, "the table's swatches and numbers are the legend"
    assert p.grid.layout.max_height and p.grid.layout.overflow == "auto", "the table scrolls"
    assert np.asarray(p.chart.train.x).shape == (20, 4)
    assert sum("best" in str(getattr(c, "value", "")) for c in cells(p)) == 1
    assert p.rows[0].description == "slice(0.0001, 0.001)"
    lo, hi = p.chart.sy.min, p.chart.sy.max
    assert lo <= 0.1 and hi >= 0.29 + 0.5


def test_history_round_trip_and_loaded_runs_are_marked(w, learn, tmp_path):
    assert w.find(num_it=40)
    w.wait(TIMEOUT)
    fit(w)
    w.from_start = True
    fit(w)
    path = w.save_history(tmp_path / "h.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "lrwidget.history" and len(doc["finds"]) == 1 and len(doc["runs"]) == 2
    w2 = LRWidget(make_learn(seed=1))
    w2.load_history(path)
    assert len(w2.runs) == 2 and all(r.loaded for r in w2.runs) and w2.finds == w.finds
    for a, b in zip(w.runs, w2.runs):
        assert (a.lr_min, a.lr_steep, a.epochs, a.code, a.values, a.losses) == (
            b.lr_min,
            b.lr_steep,
            b.epochs,
            b.code,
            b.values,
            b.losses,
        )
        assert a.from_start == b.from_start and a.end_reason == b.end_reason
    assert w2.result == w.finds[0], "a widget with no curve of its own shows the loaded one"
    assert "(loaded)" in cell_texts(w2.runs_panel)
    assert w2.runs[1].start == "start 1 of h.json", "another kernel's start: comparable with its own file's runs"


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "not JSON"),
        ('{"cells": []}', "is not an lrwidget history"),
        ('{"format": "lrwidget.history", "version": 99, "finds": [], "runs": []}', "version 99"),
        ('{"format": "lrwidget.history", "version": 1, "finds": [], "runs": [{"lr_min": "x"}]}', "runs\\[0\\]"),
        ('{"format": "lrwidget.history", "version": 1, "finds": [{"format": "x"}], "runs": []}', "finds\\[0\\]"),
    ],
)
def test_a_broken_or_foreign_history_is_refused_and_the_runs_shown_stay(w, tmp_path, text, match):
    fit(w)
    before = list(w.runs)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        w.load_history(path)
    assert w.runs == before and len(w.runs_panel.rows) == 1


def test_finds_keeps_every_lr_find_of_the_widget(w, learn):
    for n in (30, 40):
        assert w.find(num_it=n)
        w.wait(TIMEOUT)
    assert [len(f.lrs) for f in w.finds] == [30, 40] and w.finds[-1] is learn.recorder.lr_find_result
    assert LRWidget(learn).finds == [w.finds[-1]], "a new widget starts with the curve it shows"


def test_earlier_lr_find_curves_are_drawn_faintly_behind_the_last(w, learn):
    assert w.find(num_it=30)
    w.wait(TIMEOUT)
    assert np.asarray(w.chart_view.earlier.x).size == 0, "one curve: nothing earlier"
    learn.dls = make_learn(bs=16).dls  # another batch size
    assert w.find(num_it=40)
    w.wait(TIMEOUT)
    x, y = np.asarray(w.chart_view.earlier.x), np.asarray(w.chart_view.earlier.y)
    first = w.finds[0]
    assert x.shape == (30,) and np.array_equal(x, first.lrs) and np.array_equal(y, first.losses)
    assert w.result is w.finds[1]


def test_fits_from_a_marked_start_begin_there_and_the_sweep_takes_the_start_when_there_is_none(w, learn):
    fit(w, 2)
    w.mark_start()
    marked = weights(learn)
    w.from_start = True
    fit(w)
    fit(w)
    assert w.runs[1].values == w.runs[2].values != w.runs[0].values[:1]
    w.reset()
    assert same(weights(learn), marked)
    fresh = LRWidget(make_learn())  # no start yet: the sweep takes it, whatever from_start says
    before = weights(fresh.learn)
    assert not fresh.from_start and fresh.sweep(lrs=[1e-2], epochs=1)
    fresh.wait(TIMEOUT)
    assert fresh.has_start and same(weights(fresh.learn), before) and fresh.runs[0].from_start


# -- one best, a readable chart whatever the runs (issue #23) ------------------------------------------------------


def test_best_is_ranked_among_runs_of_the_same_length_from_the_same_start():
    long_fit = fake_run(0, 0.05, epochs=3)  # the lowest loss, but 3 epochs: not a rival of 2-epoch runs
    runs = [long_fit, fake_run(1, 0.3), fake_run(2, 0.2), fake_run(3, 0.5)]
    assert ranked(runs) == ([1, 2, 3], 2, "the 2-epoch runs from start 1")
    went_on = fake_run(4, 0.01, start="")  # it went on from the weights the last run left: compared with nothing
    assert ranked([*runs, went_on]) == ([1, 2, 3], 2, "the 2-epoch runs from start 1")
    other_start = fake_run(5, 0.01, start="start 2")  # one run of its kind: the group before keeps the best
    assert ranked([*runs, other_start])[1] == 2
    assert ranked([*runs, other_start, fake_run(6, 0.02, start="start 2")]) == (
        [4, 5],
        4,
        "the 2-epoch runs from start 2",
    )
    assert ranked([long_fit]) == ([], None, ""), "no best among one"


def diverged_run(i: int) -> Run:
    return fake_run(i, 12.0, values=[[9.0, 11.0, 0.1], [14.0, 12.0, 0.1]], losses=[1.0, 5.0, 11.0, 15.0])


def test_a_diverged_run_is_marked_and_leaves_the_loss_axis_to_the_others(w, tmp_path):
    runs = [fake_run(0, 0.3), fake_run(1, 0.2), diverged_run(2), fake_run(3, 0.4)]
    assert [r.diverged for r in runs] == [False, False, True, False], "it ended above where it began"
    lo, hi = y_range(runs)
    assert 0.4 + 0.1 <= hi < 2.0, "the axis fits the runs that did not diverge (their losses reach 1.0)"
    assert ranked(runs)[1] == 1, "a diverged run is never the best"
    path = tmp_path / "runs.json"
    other = LRWidget(make_learn())
    other.runs = runs
    other.save_history(path)
    w.load_history(path)
    chart = w.runs_panel.chart
    assert chart.sy.max == pytest.approx(hi) and chart.off.names.tolist() == ["#2"], "an arrow at the top, numbered"
    assert chart.off.x[0] <= 1.0 and chart.off.colors == [PALETTE[2]], "where it leaves the axis, in its colour"
    assert "diverged" in cell_texts(w.runs_panel)
    assert "(diverged)" in w.chart_view.rates.names[2], "the map of rates says so too"


def test_diverged_runs_that_leave_at_one_place_get_arrows_stacked_down_from_the_top(w, tmp_path):
    runs = [fake_run(0, 0.3), diverged_run(1), diverged_run(2), fake_run(3, 0.2), diverged_run(4)]
    path = tmp_path / "three.json"
    other = LRWidget(make_learn())
    other.runs = runs
    other.save_history(path)
    w.load_history(path)
    off = w.runs_panel.chart.off
    assert off.names.tolist() == ["#1", "#2", "#4"] and len(set(off.x.tolist())) == 1
    assert off.y.tolist() == pytest.approx([0.97, 0.89, 0.81]), "one under the other, each number readable"


def test_one_epoch_runs_are_drawn_whole_and_ticks_never_repeat(w, learn):
    w.from_start = True
    assert w.sweep(lrs=[1e-3, 1e-2], epochs=1)
    w.wait(TIMEOUT)
    chart = w.runs_panel.chart
    assert chart.sx.min == 0 and chart.sx.max > 1.0, "the validation point at epoch 1 is not cut in half"
    assert np.asarray(chart.train.x).shape[1] > 2, "the training loss per batch, a line for a 1-epoch run"
    assert len(chart.points.x) == 2 and set(chart.points.x) == {1.0}
    for axis in (
        chart.x_axis,
        chart.y_axis,
        w.chart_view.x_axis,
        w.chart_view.y_axis,
        w.loss_chart.x_axis,
        w.loss_chart.y_axis,
        w.training.sched_chart.x_axis,
        w.training.sched_chart.lr_axis,
        w.training.sched_chart.mom_axis,
    ):
        ticks = axis.axis.tick_values.tolist()
        assert len(ticks) >= 2 and len({format(t, ".6g") for t in ticks}) == len(ticks), ticks
        assert axis.axis.tick_format in ("~g", "~e")
        if axis.whole:
            assert all(t == int(t) for t in ticks), f"whole batches: {ticks}"


def test_the_status_the_title_and_the_star_name_one_best_after_a_sweep_that_follows_a_longer_fit(w, learn):
    w.from_start = True
    fit(w, 3)
    assert w.sweep(lrs=[1e-3, 1e-2, 1e-1], epochs=1)
    w.wait(TIMEOUT)
    members, best, what = ranked(w.runs)
    assert members == [1, 2, 3] and what == "the 1-epoch runs from start 1"
    assert f"run #{best}," in w.status and f"best of {what}: #{best} " in w.runs_panel.title.value
    starred = [i for i, row in enumerate(w.runs_panel.grid.children[1:]) if "best" in row.children[-1].value]
    assert starred == [best]


def test_runs_at_the_same_rate_get_their_own_number_and_stacked_triangles(w, tmp_path):
    path = tmp_path / "same.json"
    other = LRWidget(make_learn())
    other.runs = [fake_run(0, 0.3), fake_run(0, 0.2), fake_run(1, 0.4)]  # #0 and #1 at the same slice
    other.save_history(path)
    w.load_history(path)
    assert w.runs_panel.chart.valid.labels[:2] == ["#0 slice(0.0001, 0.001)", "#1 slice(0.0001, 0.001)"]
    rates = w.chart_view.rates
    assert rates.x[0] == rates.x[1] and rates.y[1] > rates.y[0] and rates.y[2] == rates.y[0], "stacked, not hidden"
    assert [str(n).split(" lr")[0] for n in rates.names] == ["#0", "#1", "#2"]
