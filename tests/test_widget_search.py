"""The widget's part of issue #24, without a browser: Search (each probe a run, Stop keeps the probes, the markers at
the best), Find LR's repeats with their band and the warnings when a suggestion is unreliable, and the chart of how
much the rate matters."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import bqplot as bq
import numpy as np
import pytest
from test_runs import fake_run
from test_widget import TIMEOUT, Record, click, make_learn, same, type_text, weights

from lrwidget import Learner, LRWidget
from lrwidget.core.events import Observer
from lrwidget.widget.reliability import SPREAD_LIMIT, judge, judge_result
from lrwidget.widget.runs import Run, outcome, ranked
from lrwidget.widget.runs_panel import rate_colors
from lrwidget.widget.sensitivity import SensitivityView, group_of, lr_range
from lrwidget.widget.style import var

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def learn():
    return make_learn()


@pytest.fixture
def w(learn):
    widget = LRWidget(learn, epochs=2)
    widget.lr_min, widget.lr_steep = 1e-3, 1e-2
    yield widget
    widget.stop()
    widget.close()


@pytest.fixture
def found(w):
    assert w.find(num_it=60)
    w.wait(TIMEOUT)
    return w


# -- Search --------------------------------------------------------------------------------------------------------


def test_each_probe_is_a_run_and_the_markers_end_at_best_keeping_their_ratio(found, learn):
    w = found
    start = weights(learn)
    seen: list[str] = []
    w.progress_label.observe(lambda c: seen.append(c["new"]), names="value")
    said: list[str] = []
    w.observe(lambda c: said.append(c["new"]), names="status")
    w.lr_min, w.lr_steep = 2e-4, 4e-3  # a ratio of 1/20 for lr_min to keep
    assert w.search(budget=1.5)
    w.wait(TIMEOUT)
    assert w.code == "learn.lr_search(2, budget=1.5)"
    (s,) = w.searches
    assert s.end_reason == "completed" and s.epochs == 2 and s.cost <= 1.5
    runs = w.runs
    assert [r.lr_steep for r in runs] == list(s.lrs) and [r.lr_min for r in runs] == list(s.lrs)
    assert [outcome(r) for r in runs] == pytest.approx(list(s.scores)), "each run's outcome is the probe's score"
    assert [r.probe for r in runs] == [f"{i} of {len(s.lrs)} ({p})" for i, p in enumerate(s.phases, 1)]
    assert all(
        r.search == 1 and r.start == "start 1" and r.from_start and r.label == f"lr {r.lr_steep:.3g}" for r in runs
    )
    assert [r.steps for r in runs] == list(s.steps) and [r.planned for r in runs] == list(s.steps)
    assert all(r.n_iter == s.fit_steps // 2 for r in runs), "their epochs are the data's: the runs chart reads them"
    assert w.lr_steep == s.best and w.lr_min == pytest.approx(s.best / 20, rel=1e-12)
    assert same(weights(learn), start), "the weights are back at the start"
    n = len(s.lrs)
    assert w.status.startswith(f"search done: best lr {s.best:.4g} for fit_one_cycle(2, {s.best:.4g})"), w.status
    assert f"{n} probes (runs #0 to #{n - 1}) from start 1" in w.status and f"{s.cost:.2f} fits" in w.status
    assert f"lr_steep={s.best:.4g} (their ratio kept)" in w.status
    assert any(t.startswith(f"search · probe 3 of {n} (sweep) · fit · ") for t in seen), seen
    assert any(t.startswith(f"search · probe {n} of {n} (long) · fit · ") for t in seen), seen
    third = f"search running: probe 3 of {n} (sweep) at lr {s.lrs[2]:.4g} ({s.steps[2]} steps): valid_loss "
    assert any(t.startswith(third) and t.endswith("(run #2)") for t in said), said
    # a search's probes rank among themselves: the long ones, the last group
    members, best, what = ranked(runs)
    longs = [i for i, p in enumerate(s.phases) if p == "long"]
    assert members == longs and what == f"the {s.steps[-1]}-step probes from start 1"
    by_score = min(longs, key=lambda i: s.scores[i])
    assert best == by_score, "the panel's best is the long probe of the lowest score, which the search's best is from"
    said = f"(run #{best})" if runs[best].lr_steep == s.best else f"(from run #{best} at lr {runs[best].lr_steep:.4g}, "
    assert said in w.status, w.status
    head = [c.value for c in w.runs_panel.grid.children[0].children]
    assert "<b>search</b>" in head[4], "the table says which search and probe each run was"
    row = " ".join(c.value for c in w.runs_panel.grid.children[3].children if hasattr(c, "value"))
    assert f"{s.steps[2]} steps" in row and f"1: 3 of {n} (sweep)" in row, row


def test_the_runs_of_a_search_never_rank_against_full_fits(w, learn):
    w.from_start = True
    w.fit(2)
    w.wait(TIMEOUT)
    w.lr_steep = 3e-2
    w.fit(2)
    w.wait(TIMEOUT)
    fits = ranked(w.runs)
    assert fits[0] == [0, 1] and fits[2] == "the 2-epoch runs from start 1"
    assert w.search(budget=1.5)
    w.wait(TIMEOUT)
    members, _, what = ranked(w.runs)
    assert 0 not in members and 1 not in members and what.endswith("-step probes from start 1")
    long_steps = w.searches[0].steps[-1]
    assert all(w.runs[i].steps == long_steps for i in members)
    # the chart of the 2-epoch fits marks their best run and the best of the search for 2-epoch fits from their start
    view = w.history.sensitivity
    view.menu.value = "the 2-epoch runs from start 1 (2)"
    best, s = ranked(w.runs[:2])[1], w.searches[0]
    assert view.members == [0, 1] and np.allclose(view.chart.pick.x, [[w.runs[best].lr_steep] * 2, [s.best] * 2])
    assert view.heading.value.endswith(f"; best #{best} {w.runs[best].lr_steep:.3g}; search best {s.best:.3g}")


@pytest.mark.parametrize("inside", [True, False], ids=["inside the third probe", "as the third probe starts"])
def test_stop_keeps_the_probes_done_and_moves_no_marker(found, learn, inside):
    w = found
    start = weights(learn)
    before = (w.lr_min, w.lr_steep)

    class StopAtThird(Observer):
        probes = 0

        def fit_start(self, learn):
            if learn.run.kind == "fit":
                self.probes += 1
                if self.probes == 3 and not inside:
                    w.stop()

        def batch_end(self, learn):
            if self.probes == 3 and inside:
                w.stop()

    stopper = StopAtThird()
    learn.observers.append(stopper)
    try:
        assert w.search()
        w.wait(TIMEOUT)
    finally:
        learn.observers.remove(stopper)
    (s,) = w.searches
    done = 3 if inside else 2  # a probe stopped before its first batch is no probe, nor a run
    assert s.end_reason == "stopped" and len(s.lrs) == done == len(w.runs)
    assert [r.lr_steep for r in w.runs] == list(s.lrs)
    assert [r.end_reason for r in w.runs] == ["completed", "completed", "stopped"][:done]
    assert (w.lr_min, w.lr_steep) == before, "a stopped search moves no marker"
    assert f"search stopped after {done} of 10 probes" in w.status
    assert f"the {done} probes done are kept (runs #0 to #{done - 1})" in w.status
    assert "markers not moved" in w.status and "back at the start" in w.status, w.status
    assert same(weights(learn), start) and not w.busy


def test_the_search_button_its_budget_and_one_run_at_a_time(found, learn):
    w = found
    rec = Record(w)
    learn.observers.append(rec)
    type_text(w.controls.budget_text, "0.75")
    click(w.search_button)
    click(w.search_button)  # a second click while it runs starts nothing
    assert not w.search()
    w.wait(TIMEOUT)
    learn.observers.remove(rec)
    assert len(w.searches) == 1 and w.code == "learn.lr_search(2, budget=0.75)" and w.searches[0].cost <= 0.75
    assert rec.buttons == {(True, True, True, False)}, "every button off but Stop while it runs"
    assert not w.search_button.disabled and w.stop_button.disabled
    for bad in ("abc", "-1", "0", "nan", "inf"):
        type_text(w.controls.budget_text, bad)
        assert not w.search() and not w.busy
        assert w.status == f"refused budget {bad!r}: not a positive finite number; search not started"
    for bad in (-1, 0, math.nan, math.inf, True, "2"):
        with pytest.raises(ValueError, match="budget must be a positive finite number"):
            w.search(budget=bad)
    with pytest.raises(ValueError, match="epochs must be a whole number >= 1, got 0"):
        w.search(epochs=0)
    assert not w.busy and len(w.searches) == 1
    assert w.search(epochs=1, budget=2.0)
    w.wait(TIMEOUT)
    assert w.code == "learn.lr_search(1, budget=2.0)" and w.epochs == 1 and w.controls.budget_text.value == "2"


def test_a_search_without_an_lr_find_runs_one_first_and_shows_its_curve(w, learn):
    assert learn.recorder.lr_find_result is None
    assert w.search()
    w.wait(TIMEOUT)
    (s,) = w.searches
    assert s.find_steps > 0 and w.finds == [s.find] and w.result is s.find
    assert f"it ran lr_find first ({s.find_steps} steps)" in w.status
    assert len(w.chart_view.smooth.x) > 10, "its curve on the chart"


def test_a_learner_that_cannot_search_says_so_with_the_errors_type(learn):
    class Refusing(Learner):  # as the fastai adapter's lr_search does
        def lr_search(self, epochs=5, budget=1.5):
            raise NotImplementedError("lr_search runs on lrwidget's Learner, not on a fastai Learner")

    w = LRWidget(Refusing(learn.dls, learn.model, device="cpu"))
    assert w.search()
    with pytest.raises(NotImplementedError, match="lr_search runs on lrwidget's Learner") as e:
        w.wait(TIMEOUT)
    assert w.status == "error: NotImplementedError: lr_search runs on lrwidget's Learner, not on a fastai Learner"
    assert w.background.error is e.value and not w.busy and not w.searches and not w.runs
    assert "NotImplementedError" in w.error_box.children[0].value and w.error_box.layout.display == ""
    w.close()


# -- is a suggestion reliable: the maths, with numbers ----------------------------------------------------------------

LRS = np.geomspace(1e-7, 10, 100)


def curve(drop: float, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smoothed curve at 2.3 that falls by `drop` over 1e-4..1e-2, then rises; raw = smoothed + uniform noise of
    width `noise` (its 5th..95th percentile spread: 0.9 noise)."""
    x = np.log10(LRS)
    smooth = 2.3 - drop * np.clip((x + 4) / 2, 0, 1) + np.where(x > -1, 3 * (x + 1), 0)
    raw = smooth + np.random.default_rng(seed).uniform(-noise / 2, noise / 2, len(LRS))
    return smooth, raw


def test_a_curve_whose_drop_is_within_the_raw_losss_spread_is_flat():
    smooth, raw = curve(drop=0.02, noise=0.1)
    v = judge(LRS, smooth, raw, 100)
    # the drop: the median of the usable curve's first tenth (2.3) minus its minimum (2.28)
    assert v.drop == pytest.approx(0.02, abs=1e-9)
    # the noise: raw - smoothed over the first third of the usable curve, 5th to 95th percentile: about 0.9 x 0.1
    assert 0.08 < v.noise < 0.1 and v.noise_from == "raw"
    assert v.flat and not v.reliable
    said = f"flat curve, try Search: the loss drops 0.02 from its start, within its noise ({v.noise:.3g}, the raw"
    assert v.said() == said + " loss's spread)"
    steep = judge(LRS, *curve(drop=0.5, noise=0.1), 100)
    assert steep.drop == pytest.approx(0.5) and not steep.flat and steep.reliable and steep.said() == ""


def test_with_repeats_the_noise_is_the_bands_widest_point_up_to_the_minimum():
    smooth, _ = curve(drop=0.05, noise=0.0)
    lo, hi = smooth - 0.01, smooth + 0.01
    hi[LRS > 0.05] += 5.0  # past the minimum a repeat diverged early: not noise
    hi[30] += 0.05  # the widest point before the minimum: 0.07
    v = judge(LRS, smooth, smooth, 100, band=(lo, hi), spread={}, repeats=3)
    assert v.noise_from == "band" and v.noise == pytest.approx(0.07) and v.drop == pytest.approx(0.05) and v.flat
    assert "within its noise (0.07, the band of 3 repeats)" in v.said()
    hi[30] -= 0.05
    assert not judge(LRS, smooth, smooth, 100, band=(lo, hi), repeats=3).flat, "0.05 is more than the band's 0.02"


def test_a_suggestion_a_marker_sits_on_that_moved_over_3x_is_unreliable():
    smooth, raw = curve(drop=0.5, noise=0.01)
    spread = {"lr_min": 1.5, "lr_steep": 4.2, "valley": 9.0, "slide": None}
    v = judge(LRS, smooth, raw, 100, spread=spread, repeats=3, on=("lr_min", "lr_steep"))
    assert SPREAD_LIMIT == 3 and v.moved == {"lr_steep": 4.2}, "valley moved more, but no marker sits on it"
    assert v.said() == "lr_steep moved 4.2x over 3 repeats: unreliable, try Search" and not v.flat
    both = judge(LRS, smooth, raw, 100, spread=spread, repeats=3, on=("valley", "lr_steep"))
    assert list(both.moved) == ["valley", "lr_steep"] and both.said().startswith("valley moved 9.0x over 3 repeats")
    assert judge(LRS, smooth, raw, 100, spread={"lr_steep": 3.0}, repeats=3, on=("lr_steep",)).reliable, (
        "3x is not over"
    )


def test_a_curve_too_short_to_read_is_neither_flat_nor_steep():
    v = judge(LRS[:8], np.full(8, 2.3), np.full(8, 2.3), 100)
    assert math.isnan(v.drop) and not v.flat and v.said() == ""


# -- Find LR's repeats: the band and the warnings in the widget ----------------------------------------------------


def test_find_with_repeats_draws_the_band_behind_the_median_and_says_whats_unreliable(w, learn):
    seen: list[str] = []
    w.progress_label.observe(lambda c: seen.append(c["new"]), names="value")
    type_text_int(w.controls.repeats_box, 3)
    assert w.find(num_it=60)
    w.wait(TIMEOUT)
    res = w.result
    assert w.code == "learn.lr_find(start_lr=1e-07, end_lr=10.0, num_it=60, repeats=3)"
    band = w.chart_view.band
    chart = w.chart_view.figure
    assert chart.marks.index(band) < chart.marks.index(w.chart_view.smooth), "behind the median curve"
    assert res.repeats == 3 and set(res.spread) == {"lr_min", "lr_steep", "valley", "slide"}
    lo, hi = res.band
    x, y = np.asarray(band.x), np.asarray(band.y)
    n = len(w.chart_view.smooth.x)
    assert x.shape == y.shape == (2, n) and band.fill == "between"
    assert np.allclose(y[0], lo[:n]) and np.allclose(y[1], hi[:n]) and np.all(y[0] <= y[1])
    assert any(t.startswith("repeat 2 of 3 · lr_find · step ") for t in seen), seen
    v = judge_result(res, w.markers.sitting_on())
    assert w.status.startswith("lr_find done (") and (
        v.said() in w.status if v.said() else "try Search" not in w.status
    )
    # one range test afterwards: the band goes
    type_text_int(w.controls.repeats_box, 1)
    assert w.find(num_it=60)
    w.wait(TIMEOUT)
    assert len(w.chart_view.band.x) == 0 and "repeats" not in w.code


def test_the_status_says_a_flat_curve_and_a_suggestion_that_moved(w, learn, monkeypatch):
    smooth, raw = curve(drop=0.002, noise=0.05)
    res = learn.lr_find(num_it=100, show_plot=False)
    flat = res._replace(
        lrs=LRS, losses=smooth, raw_losses=raw, lr_min=1e-4, lr_steep=1e-3, band=(smooth - 0.01, smooth + 0.01),
        spread={"lr_min": 2.0, "lr_steep": 4.24}, repeats=3,
    )  # fmt: skip
    monkeypatch.setattr(learn, "lr_find", lambda *a, **k: flat)
    assert w.find()
    w.wait(TIMEOUT)
    assert "; lr_steep moved 4.2x over 3 repeats: unreliable, try Search; flat curve, try Search: the loss drops " in (
        w.status
    ), w.status
    assert "within its noise (0.02, the band of 3 repeats)" in w.status


def type_text_int(box, value: int) -> None:
    from test_widget import update

    update(box, value=value)


# -- how much the rate matters --------------------------------------------------------------------------------------


def probe(i: int, lr: float, valid: float, steps: int = 3, phase: str = "sweep", **kw) -> Run:
    """A probe of search 1: `steps` steps at `lr` (in an epoch of 16), its validation loss `valid`."""
    d = dict(lr_min=lr, lr_steep=lr, epochs=1, values=[[valid + 0.1, valid, 0.5]], n_iter=16, iters=[steps])
    d.update(losses=[1.0, 0.9], batches=[0, steps - 1], search=1, probe=f"{i + 1} of 7 ({phase})", steps=steps)
    return fake_run(i, valid, **{**d, **kw})


def sweep_and_long() -> list[Run]:
    fits = [fake_run(0, 0.3), fake_run(1, 0.25)]  # two 2-epoch fits from start 1
    sweep = [probe(2, 1e-3, 0.9), probe(3, 1e-2, 0.6), probe(4, 1e-1, 0.7), probe(5, 1.0, 0.8)]
    sweep.append(probe(6, 3.0, 9.0, values=[[9.5, 9.0, 0.1]], losses=[1.0, 9.0]))  # it diverged
    longs = [probe(7, 1e-2, 0.2, 12, "long"), probe(8, 10**-2.5, 0.25, 12, "long")]
    return fits + sweep + longs


def test_the_group_drawn_is_the_one_picked_else_the_largest():
    runs = sweep_and_long()
    assert group_of(runs, None) == [2, 3, 4, 5, 6], "the sweep's five probes: the largest group"
    assert group_of(runs, runs[7].group) == [7, 8] and group_of(runs, runs[0].group) == [0, 1]
    assert group_of(runs, (9, 9, "start 9")) == [2, 3, 4, 5, 6], "a group that is gone: the largest"
    assert group_of(runs[:2], None) == [0, 1] and group_of(runs[:1], None) == []
    assert lr_range([1e-3, 1.0]) == pytest.approx((1e-3 / 10**0.15, 10**0.15))


def test_the_chart_draws_outcome_against_rate_with_the_suggestions_the_pick_and_diverged_runs_at_the_top(learn):
    res = learn.lr_find(num_it=60, show_plot=False)
    runs = sweep_and_long()
    view = SensitivityView()
    assert view.layout.display == "none" and view.children == (view.heading,), "nothing drawn before a group"
    view.show(runs, [res], [])
    c = view.chart
    assert view.layout.display == "" and view.children == (view.heading, view.menu, c.figure)
    assert c.points.x.tolist() == [1e-3, 1e-2, 1e-1, 1.0], "by rate; the diverged one is not a point"
    assert c.points.y.tolist() == pytest.approx([0.9, 0.6, 0.7, 0.8]) and c.line.x.tolist() == c.points.x.tolist()
    assert c.points.colors[1] == rate_colors([0.6, 0.9])[0], "the best green, as on the map of rates"
    assert c.off.names.tolist() == ["#6"] and c.off.x.tolist() == [3.0] and c.off.y.tolist() == [0.97]
    assert isinstance(c.sx, bq.LogScale) and c.sy.max < 9.0, "the loss axis fits the runs that did not diverge"
    shown = {k: v for k, v in res.suggestions.items() if v is not None}
    assert c.rules.x[:, 0].tolist() == pytest.approx(list(shown.values()))
    assert c.rules.colors == [var(k) for k in shown]
    assert c.pick.x.tolist() == [1e-2, 1e-2], "no search: the group's best run"
    texts = [lab.text.tolist() for lab in c.labels if len(lab.text)]
    assert texts[-1] == ["best #3 0.01"] and texts[0] == [f"{next(iter(shown))} {next(iter(shown.values())):.3g}"]
    assert c.sx.min <= min([*shown.values(), 1e-3]) and c.sx.max >= 3.0, "every rate, rule and pick in view"
    assert view.heading.value == (
        "<b>how much the rate matters</b>: the 3-step probes from start 1: 5 runs, validation loss at their end; "
        "best #3 0.01"
    )
    assert view.menu.options == ("the 12-step probes from start 1 (2)", "the 3-step probes from start 1 (5)",
                                 "the 2-epoch runs from start 1 (2)")  # fmt: skip
    assert view.menu.value == "the 3-step probes from start 1 (5)"
    view.menu.value = "the 12-step probes from start 1 (2)"  # the user picks another group
    assert c.points.x.tolist() == pytest.approx([10**-2.5, 1e-2]) and view.members == [7, 8]
    assert "the 12-step probes from start 1: 2 runs" in view.heading.value
    view.show([*runs, probe(9, 0.3, 0.5)], [res], [])  # a new run: the group picked stays
    assert view.members == [7, 8]
    # the probes of a search of this widget: its best is the pick, the loss at its start drawn
    s = SimpleNamespace(best=10**-2.5, find=res, start_loss=2.31)
    view.show(runs, [res], [s])
    assert c.pick.x.tolist() == pytest.approx([10**-2.5] * 2) and "search best 0.00316" in view.heading.value
    assert c.start.y.tolist() == [2.31, 2.31] and view.heading.value.endswith("; dotted: the loss at the start, 2.3100")
    assert c.sy.max > 2.31


def test_after_a_search_the_chart_shows_its_sweep_with_its_best_and_start(found):
    w = found
    assert w.search()
    w.wait(TIMEOUT)
    (s,) = w.searches
    view = w.history.sensitivity
    sweep = [i for i, p in enumerate(s.phases) if p == "sweep"]
    assert view.members == sweep and view in w.runs_panel.children
    c = view.chart
    assert sorted(c.points.x.tolist() + c.off.x.tolist()) == pytest.approx(sorted(s.lrs[i] for i in sweep))
    assert c.pick.x.tolist() == [s.best, s.best] and c.start.y.tolist() == pytest.approx([s.start_loss] * 2)
    assert f"the {s.steps[0]}-step probes from start 1: {len(sweep)} runs" in view.heading.value
    assert f"search best {s.best:.3g}" in view.heading.value


# -- the history file ------------------------------------------------------------------------------------------------


def test_probes_go_to_the_history_file_and_files_without_them_still_read(w, tmp_path):
    runs = sweep_and_long()
    other = LRWidget(make_learn())
    other.runs = runs
    path = other.save_history(tmp_path / "search.json")
    w.load_history(path)
    back = w.runs
    fields = lambda r: (r.search, r.probe, r.steps, r.n_iter)  # noqa: E731
    assert [fields(r) for r in back] == [fields(r) for r in runs]
    assert all(r.loaded for r in back) and back[2].label == "lr 0.001" and back[0].label.startswith("slice(")
    rows = w.runs_panel.grid.children[1:]
    assert "search </span>1: 3 of 7 (sweep)" in rows[2].children[4].value, "a probe says its search and place"
    assert "search" not in rows[0].children[4].value, "a fit's cell is empty (a card leaves it out)"
    # loaded probes name their file's start, and no search of this kernel: their pick is their best run
    assert w.history.sensitivity.members == [2, 3, 4, 5, 6] and "best #3" in w.history.sensitivity.heading.value
    old = Run.from_dict({k: v for k, v in runs[0].to_dict().items() if k not in ("search", "probe", "steps")})
    assert (old.search, old.probe, old.steps, old.planned) == (0, "", 0, 4) and old.label == runs[0].label
    with pytest.raises(ValueError, match="'search' must be a whole number"):
        Run.from_dict({**runs[2].to_dict(), "search": "1"})


def test_a_fastai_learner_refuses_search_and_repeats_in_the_widget_with_the_errors_type(tmp_path):
    pytest.importorskip("fastai")
    from test_fastai import make_fastai_learn

    w = LRWidget(make_fastai_learn(tmp_path))
    for start, what in ((lambda: w.search(), "lr_search"), (lambda: w.find(repeats=3), "lr_find(repeats=3)")):
        assert start()
        with pytest.raises(NotImplementedError, match=rf"{re.escape(what)} runs on lrwidget's own Learner") as e:
            w.wait(TIMEOUT)
        assert w.status == f"error: NotImplementedError: {e.value}" and not w.busy
    assert not w.runs and not w.searches and not w.finds
    w.close()
