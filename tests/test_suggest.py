import math

import numpy as np
import pytest

from lrwidget.core.schedules import lr_range
from lrwidget.core.suggest import NAMES, STEEP_DECADES, Suggestions, minimum, slide, steep, suggest_lrs, trim, valley

nan, inf = float("nan"), float("inf")


# --- Reference: fastai 2.8 fastai/callback/schedule.py (Apache-2.0), torch ops replaced by numpy ones. ---


def fastai_trim(lrs, losses, num_it):
    lrs, losses = np.asarray(lrs[num_it // 10 : -5]), np.asarray(losses[num_it // 10 : -5])
    nan_idxs = np.flatnonzero(np.isnan(losses))
    if len(nan_idxs) > 0:
        drop_idx = min(nan_idxs)
        lrs = lrs[:drop_idx]
        losses = losses[:drop_idx]
    return lrs, losses


def fastai_valley(lrs, losses, num_it=None):
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx]), (float(lrs[idx]), losses[idx])


def fastai_slide(lrs, losses, num_it=None, lr_diff=15, thresh=0.005, adjust_value=1.0):
    losses = np.asarray(losses)
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    suggestion = float(local_min_lr) * adjust_value
    idx = np.interp(np.log10(suggestion), np.log10(lrs), losses)
    return suggestion, (suggestion, idx)


def fastai_minimum(lrs, losses, num_it=None):
    lr_min = lrs[losses.argmin()].item()
    loss_idx = losses[min(range(len(lrs)), key=lambda i: abs(lrs[i] - lr_min))]
    return lr_min / 10, (lr_min, loss_idx)


def fastai_steep(lrs, losses, num_it=None):
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    lr_steep = lrs[grads.argmin()].item()
    loss_idx = losses[min(range(len(lrs)), key=lambda i: abs(lrs[i] - lr_steep))]
    return lr_steep, (lr_steep, loss_idx)


# --- Curves ---


def with_tail(lrs, losses):
    """Append the 5 points suggest_lrs drops (NaN, so using them would show); use with num_it < 10 (no skip)."""
    q = lrs[-1] / lrs[-2]
    return np.r_[lrs, lrs[-1] * q ** np.arange(1, 6)], np.r_[losses, [nan] * 5]


def lr_find_curve(seed, n, stop_div=True):
    """A simulated lr_find: noisy loss, fastai's debiased EMA (beta .98), stopped at 4x the best smoothed loss."""
    rng = np.random.default_rng(seed)
    lrs = lr_range(1e-7, 10.0, n)
    x = np.log10(lrs)
    a, b = rng.uniform(-5, -2), rng.uniform(-1.5, 0.5)
    raw = 2.3 - 1.8 / (1 + np.exp(-3 * (x - a))) + np.exp(3 * (x - b)) + rng.normal(0, 0.1, n)
    avg, best, out = 0.0, inf, []
    for i, loss in enumerate(raw, 1):
        avg = 0.98 * avg + 0.02 * loss
        out.append(avg / (1 - 0.98**i))
        best = min(best, out[-1])
        if stop_div and out[-1] > 4 * best:
            break
    return lrs[: len(out)], np.array(out)


def u_curve():
    """Gaussian dip in log10(lr): minimum at x=-2 (i=50), steepest at the inflection x=-3.05, mid-segment [-3.1, -3]."""
    x = -7 + 0.1 * np.arange(70)
    return 10**x, 1 - np.exp(-((x + 2) ** 2) / (2 * 1.05**2))


# --- Shape of the result ---


def test_suggestions_is_a_dict_with_exact_keys_and_plain_floats():
    s = suggest_lrs(*u_curve())
    assert isinstance(s, Suggestions) and isinstance(s, dict)
    assert list(s) == ["lr_min", "lr_steep", "valley", "slide"] == list(NAMES)
    assert all(type(v) is float for v in s.values())
    assert s.reasons == {} and list(s.points) == list(NAMES)
    assert all(type(p) is tuple and len(p) == 2 and all(type(c) is float for c in p) for p in s.points.values())


# --- Fixed curves, hand computed ---


def test_u_curve_minimum_and_steep():
    lrs, losses = u_curve()
    s = suggest_lrs(lrs, losses)  # 70 points: first 7 and last 5 dropped
    assert s["lr_min"] == pytest.approx(1e-3, rel=1e-9)  # lr at the minimum (1e-2) / 10
    assert s.points["lr_min"] == pytest.approx((1e-2, 0.0), rel=1e-9, abs=1e-15)
    assert s["lr_steep"] == pytest.approx(10**-3.1, rel=1e-9)  # left end of the steepest segment
    assert s.points["lr_steep"] == pytest.approx((10**-3.1, 1 - math.exp(-(1.1**2) / (2 * 1.05**2))), rel=1e-9)


def test_u_curve_valley_and_slide_match_fastai():
    lrs, losses = u_curve()
    x, y = fastai_trim(lrs, losses, 70)
    s = suggest_lrs(lrs, losses)
    assert (s["valley"], s.points["valley"]) == fastai_valley(x, y)
    assert (s["slide"], s.points["slide"]) == fastai_slide(x, y)


def divergence_curve():
    """Falls (steepest step -0.3 at i=10) to a minimum at i=21, diverges, then falls back by -0.9 at i=26."""
    steps = [-0.05] * 10 + [-0.3] + [-0.05] * 10 + [0.4] * 5 + [-0.9] + [0.1] * 13
    losses = np.r_[2.3, 2.3 + np.cumsum(steps)]
    return 10 ** (-5 + 0.1 * np.arange(len(losses))), losses


def test_steep_stops_at_the_minimum_where_fastai_lands_past_divergence():
    lrs, losses = divergence_curve()
    assert int(np.argmin(losses)) == 21 and losses[21] == pytest.approx(1.0)
    value, point, reason = steep(lrs, losses)
    assert value == lrs[10] and point == (lrs[10], losses[10]) and reason is None
    fastai_value, _ = fastai_steep(lrs, losses)
    assert fastai_value == lrs[26] and fastai_value > lrs[21]  # after the minimum: where the loss falls back
    s = suggest_lrs(*with_tail(lrs, losses), num_it=9)
    assert s["lr_steep"] == lrs[10] and s["lr_min"] == lrs[21] / 10


# --- Agreement with fastai on simulated lr_find curves ---


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("n", [60, 100, 250])
def test_matches_fastai_on_simulated_curves(seed, n):
    lrs, losses = lr_find_curve(seed, n)
    x, y = fastai_trim(lrs, losses, n)
    s = suggest_lrs(lrs, losses, num_it=n)
    assert s["valley"] is not None and s["slide"] is not None
    assert (s["valley"], s.points["valley"]) == fastai_valley(x, y)
    assert (s["slide"], s.points["slide"]) == fastai_slide(x, y)
    assert (s["lr_min"], s.points["lr_min"]) == fastai_minimum(x, y)
    # steep agrees with fastai's whole-curve search unless fastai's pick lies past the minimum,
    # or more than STEEP_DECADES below it (a blip of the noisy first steps)
    fastai_lr, lr_at_min = fastai_steep(x, y)[0], x[np.argmin(y)]
    if lr_at_min / 10**STEEP_DECADES <= fastai_lr <= lr_at_min:
        assert s["lr_steep"] == fastai_lr
    else:
        assert lr_at_min / 10**STEEP_DECADES <= s["lr_steep"] < lr_at_min


def test_steep_ignores_a_blip_decades_before_the_descent():
    lrs = 10 ** np.linspace(-7, 0, 71)  # 10 points a decade
    losses = 1 + 0.3 / (1 + np.exp(4 * (np.log10(lrs) + 1.5)))  # a plateau at 1.3, a fall to 1.0 around 3e-2
    losses[-5:] += np.linspace(0, 1, 5)  # divergence after the minimum
    losses[6] -= 0.2  # a noise blip at 1e-6.4, sharper than the real fall
    value, _, _ = steep(lrs, losses)
    assert fastai_steep(lrs, losses)[0] == pytest.approx(lrs[5])  # fastai lands on the blip
    assert 1e-3 <= value <= 1e-1 and value == pytest.approx(10**-1.5, rel=0.3)


def test_valley_and_slide_agree_on_untrimmed_curves():
    for seed in range(20):
        lrs, losses = lr_find_curve(100 + seed, 120, stop_div=False)
        assert valley(lrs, losses)[:2] == fastai_valley(lrs, losses)
        assert slide(lrs, losses)[:2] == fastai_slide(lrs, losses)


# --- Trimming ---


def test_trim_counts_on_points_run():
    lrs = lr_range(1e-7, 10.0, 100)[:30]  # num_it=100 asked, 30 run
    losses = np.linspace(3, 1, 30)
    x, y = trim(lrs, losses, num_it=100)
    np.testing.assert_array_equal(x, lrs[10:25])
    np.testing.assert_array_equal(y, losses[10:25])
    x, _ = trim(lrs, losses)  # num_it defaults to the points run
    np.testing.assert_array_equal(x, lrs[3:25])


def test_num_it_decides_the_skipped_start():
    lrs = 10 ** np.linspace(-6, 0, 50)
    losses = 2 + (np.arange(50) - 30.0) ** 2 / 100
    losses[7] = 0.5  # kept when 5 are skipped (num_it=50), skipped when 10 are (num_it=100)
    losses[46] = 0.1  # in the last 5: always dropped
    assert suggest_lrs(lrs, losses)["lr_min"] == lrs[7] / 10
    assert suggest_lrs(lrs, losses, num_it=100)["lr_min"] == lrs[30] / 10


@pytest.mark.parametrize("bad", [nan, inf, -inf])
def test_cut_at_first_non_finite_loss(bad):
    lrs, losses = u_curve()
    losses = losses.copy()
    losses[45] = bad
    losses[50:] -= 5  # a deeper minimum after the cut must be ignored
    x, y = trim(lrs, losses)
    np.testing.assert_array_equal(x, lrs[7:45])
    s = suggest_lrs(lrs, losses)
    assert s["lr_min"] == lrs[44] / 10  # the U still falls at the cut


def test_inputs_as_lists_and_tensors():
    lrs, losses = u_curve()
    expected = suggest_lrs(lrs, losses)
    assert suggest_lrs(list(lrs), list(losses)) == expected
    import torch

    t = torch.tensor(losses, requires_grad=True)
    assert suggest_lrs(torch.tensor(lrs), t) == expected


# --- Curves with no (or not all) suggestions: None and a reason, never an exception ---


def assert_all_none(s, *words):
    assert list(s) == list(NAMES) and all(v is None for v in s.values())
    assert s.points == {} and list(s.reasons) == list(NAMES)
    for r in s.reasons.values():
        assert r and all(w in r for w in words), r


def test_empty_curve():
    assert_all_none(suggest_lrs([], []), "no points")


def test_curve_shorter_than_the_trim():
    assert_all_none(suggest_lrs(lr_range(1e-7, 10.0, 5), np.linspace(3, 1, 5)), "no usable points", "num_it")
    assert_all_none(suggest_lrs(lr_range(1e-7, 10.0, 6), np.linspace(3, 1, 6)), "only 1 usable point", "num_it")


def test_short_curve_of_three_points():
    lrs, losses = with_tail(10 ** np.array([-4.0, -3.0, -2.0]), np.array([3.0, 2.0, 2.5]))
    s = suggest_lrs(lrs, losses, num_it=len(lrs))  # 8 run: nothing skipped at the start
    assert s["slide"] is None and "only 3 usable points" in s.reasons["slide"] and "num_it" in s.reasons["slide"]
    assert s["valley"] is None and s.reasons["valley"]  # decreases over 2 points only
    assert s["lr_min"] == 1e-4 and s["lr_steep"] == 1e-4
    for f in (minimum, steep, valley, slide):
        assert f([1e-3, 1e-2, 1e-1], [1.0, 1.0, 1.0])[0] is None  # called directly: no exception either


@pytest.mark.parametrize("losses", [np.full(40, 2.0), 2.0 + 1e-14 * np.sin(np.arange(40))])
def test_flat_curve(losses):
    assert_all_none(suggest_lrs(lr_range(1e-7, 10.0, 40), losses), "flat")


def test_small_but_real_change_is_not_flat():
    losses = 2.0 - 1e-6 * np.sin(np.linspace(0, 3, 60))
    assert suggest_lrs(lr_range(1e-7, 10.0, 60), losses)["lr_min"] is not None


def test_rising_curve():
    assert_all_none(suggest_lrs(lr_range(1e-7, 10.0, 60), np.linspace(1, 3, 60) ** 2), "never decreases")


def test_all_nan_curve():
    assert_all_none(suggest_lrs(lr_range(1e-7, 10.0, 60), np.full(60, nan)), "not finite")


def test_methods_on_empty_and_single_point_curves():
    for f in (minimum, steep, valley, slide):
        for n in (0, 1):
            value, point, reason = f(np.ones(n), np.ones(n))
            assert value is None and point is None and reason


def test_mismatched_or_malformed_inputs_raise():
    with pytest.raises(ValueError, match="same length|equal length"):
        suggest_lrs(lr_range(1e-7, 10.0, 20), np.ones(19))
    with pytest.raises(ValueError):
        suggest_lrs(np.ones((4, 5)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="positive"):
        suggest_lrs(np.r_[-1.0, np.ones(19)], np.ones(20))


# --- The None rules of each method ---


def test_minimum_none_when_first_point_is_lowest():
    assert minimum([1e-3, 1e-2, 1e-1], [1.0, 2.0, 0.9])[0] == 1e-2  # a later lower point: fine
    value, _, reason = minimum([1e-3, 1e-2, 1e-1], [1.0, 2.0, 1.5])
    assert value is None and "never decreases" in reason


def test_steep_none_without_a_descent_before_the_minimum():
    value, _, reason = steep([1e-3, 1e-2, 1e-1, 1.0], [1.0, 2.0, 1.5, 3.0])  # falls only after rising above the start
    assert value is None and "never decreases" in reason


def test_valley_needs_a_decreasing_run_of_three():
    lrs = 10 ** np.arange(-6.0, 0.0)
    value, _, reason = valley(lrs, [2.0, 1.0, 3.0, 4.0, 5.0, 6.0])  # longest decreasing run: 2 points
    assert value is None and "only 2 points" in reason
    assert fastai_valley(lrs, [2.0, 1.0, 3.0, 4.0, 5.0, 6.0])[0] == lrs[-1]  # fastai's index wraps to the last lr
    value, _, reason = valley(lrs, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert value is None and "never decreases" in reason
    losses = [3.0, 2.0, 1.0, 4.0, 5.0, 6.0]  # a run of exactly 3 gives a value, as fastai's
    assert valley(lrs, losses)[:2] == fastai_valley(lrs, losses) and valley(lrs, losses)[0] == lrs[0]


def test_slide_needs_more_points_than_lr_diff():
    lrs, losses = lr_find_curve(3, 200, stop_div=False)
    value, _, reason = slide(lrs[:15], losses[:15])
    assert value is None and "only 15 usable points" in reason
    with pytest.raises(IndexError):
        fastai_slide(lrs[:15], losses[:15])
    assert slide(lrs[:16], losses[:16])[:2] == fastai_slide(lrs[:16], losses[:16])
