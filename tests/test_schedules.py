import math
import re
import warnings

import numpy as np
import pytest

from lrwidget.core.schedules import combined_cos, cos_anneal, even_mults, exp_sweep, lr_per_group, lr_range, one_cycle


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=0)


def cos_closed(start, end, p):
    return start + (1 + math.cos(math.pi * (1 - p))) * (end - start) / 2


def test_exp_sweep_closed_form():
    assert exp_sweep(1e-7, 10.0, 0.0) == 1e-7
    assert exp_sweep(1e-7, 10.0, 1.0) == approx(10.0)
    assert exp_sweep(1e-7, 10.0, 0.5) == approx(1e-3)  # geometric mean
    pos = np.array([0.0, 0.25, 0.5])
    np.testing.assert_allclose(exp_sweep(1e-4, 1.0, pos), [1e-4, 1e-3, 1e-2], rtol=1e-12)


def test_cos_anneal_closed_form():
    assert cos_anneal(2.0, 6.0, 0.0) == 2.0
    assert cos_anneal(2.0, 6.0, 1.0) == approx(6.0)
    assert cos_anneal(2.0, 6.0, 0.5) == approx(4.0)
    assert cos_anneal(2.0, 6.0, 0.25) == approx(2.0 + (1 - math.sqrt(2) / 2) * 2.0)
    out = cos_anneal(2.0, 6.0, np.linspace(0, 1, 11))
    assert out.shape == (11,) and np.all(np.diff(out) > 0)


def test_combined_cos_phases():
    pct, s, m, e = 0.3, 1.0, 10.0, 0.5
    assert combined_cos(pct, s, m, e, 0.0) == s
    assert combined_cos(pct, s, m, e, pct) == m  # second phase at its pos 0: exactly middle
    assert combined_cos(pct, s, m, e, 1.0) == approx(e)
    assert combined_cos(pct, s, m, e, pct / 2) == approx((s + m) / 2)
    assert combined_cos(pct, s, m, e, (1 + pct) / 2) == approx((m + e) / 2)
    assert combined_cos(pct, s, m, e, 0.1) == approx(cos_closed(s, m, 0.1 / pct))
    assert combined_cos(pct, s, m, e, 0.8) == approx(cos_closed(m, e, (0.8 - pct) / (1 - pct)))


def test_combined_cos_pct_edges():
    assert combined_cos(0.0, 1.0, 10.0, 0.5, 0.0) == 10.0  # no warm-up: starts at middle
    assert combined_cos(0.0, 1.0, 10.0, 0.5, 0.5) == approx(5.25)
    assert combined_cos(1.0, 1.0, 10.0, 0.5, 0.5) == approx(5.5)  # no annealing
    assert combined_cos(1.0, 1.0, 10.0, 0.5, 1.0) == 10.0
    pos = np.linspace(0, 1, 21)
    assert np.all(np.isfinite(combined_cos(0.0, 1.0, 10.0, 0.5, pos)))
    assert np.all(np.isfinite(combined_cos(1.0, 1.0, 10.0, 0.5, pos)))


def test_combined_cos_per_group_shape():
    lr = np.array([1e-3, 1e-2, 1e-1])
    pos = np.linspace(0, 1, 7, endpoint=False)
    out = combined_cos(0.25, lr / 25, lr, lr / 1e5, pos)
    assert out.shape == (7, 3)
    for g in range(3):
        np.testing.assert_allclose(out[:, g], combined_cos(0.25, lr[g] / 25, lr[g], lr[g] / 1e5, pos), rtol=1e-12)
    assert combined_cos(0.25, lr / 25, lr, lr / 1e5, 0.25).shape == (3,)


def test_lr_range():
    lrs = lr_range(1e-7, 10.0, 100)
    assert lrs.shape == (100,) and lrs.dtype == np.float64
    assert lrs[0] == 1e-7
    assert lrs[50] == approx(1e-7 * (1e8) ** 0.5)
    assert lrs[-1] == approx(1e-7 * 1e8**0.99) and lrs[-1] < 10.0
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], 1e8**0.01, rtol=1e-12)


@pytest.mark.parametrize("args", [(0.0, 1.0, 10), (1e-7, float("nan"), 10), (1e-7, 10.0, 0), (1e-7, 10.0, 2.5)])
def test_lr_range_rejects(args):
    with pytest.raises(ValueError):
        lr_range(*args)


def test_one_cycle_float():
    n, lr_max, div, div_final, pct = 100, 1e-2, 25.0, 1e5, 0.25
    lrs, moms = one_cycle(n, lr_max, div, div_final, pct)
    assert lrs.shape == (100, 1) and moms.shape == (100,)
    lr = lrs[:, 0]
    assert lr[0] == lr_max / div
    assert lr[25] == lr_max and int(np.argmax(lr)) == 25  # k = pct*n
    assert lr[12] == approx(cos_closed(lr_max / div, lr_max, 12 / n / pct))
    assert lr[-1] == approx(cos_closed(lr_max, lr_max / div_final, (1 - 1 / n - pct) / (1 - pct)))
    assert lr[-1] < lr_max / 1000
    assert np.all(np.diff(lr[:26]) > 0) and np.all(np.diff(lr[25:]) < 0)
    assert moms[0] == 0.95 and moms[25] == 0.85 and int(np.argmin(moms)) == 25
    assert np.all(np.diff(moms[:26]) < 0) and np.all(np.diff(moms[25:]) > 0)  # the opposite way
    assert moms[-1] == approx(cos_closed(0.85, 0.95, (1 - 1 / n - pct) / (1 - pct)))


def test_one_cycle_last_lr_tends_to_lr_max_over_div_final():
    lrs, _ = one_cycle(100_000, 1.0)
    assert lrs[-1, 0] == pytest.approx(1e-5, rel=1e-3)


def test_one_cycle_per_group():
    lr_max = np.array([1e-4, 1e-3, 1e-2])
    lrs, moms = one_cycle(40, lr_max)
    assert lrs.shape == (40, 3) and moms.shape == (40,)
    np.testing.assert_allclose(lrs / lr_max, np.repeat(lrs[:, :1] / 1e-4, 3, axis=1), rtol=1e-12)
    np.testing.assert_array_equal(lrs[10], lr_max)  # k = 0.25 * 40


def test_one_cycle_pct_edges_and_one_step():
    lrs, _ = one_cycle(10, 1.0, pct_start=0.0)
    assert lrs[0, 0] == 1.0 and np.all(np.diff(lrs[:, 0]) < 0)
    lrs, _ = one_cycle(10, 1.0, pct_start=1.0)
    assert lrs[0, 0] == 1 / 25 and np.all(np.diff(lrs[:, 0]) > 0) and lrs[-1, 0] < 1.0
    lrs, moms = one_cycle(1, 1.0)
    assert lrs.tolist() == [[1 / 25]] and moms.tolist() == [0.95]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_steps=0), "n_steps"),
        (dict(n_steps=2.5), "n_steps"),
        (dict(n_steps=True), "n_steps"),
        (dict(div=0.0), "div"),
        (dict(div=-1.0), "div"),
        (dict(div=float("nan")), "div"),
        (dict(div_final=0.0), "div_final"),
        (dict(div_final=float("inf")), "div_final"),
        (dict(pct_start=-0.1), "pct_start"),
        (dict(pct_start=1.1), "pct_start"),
        (dict(pct_start=float("nan")), "pct_start"),
        (dict(lr_max=0.0), "lr_max"),
        (dict(lr_max=np.array([1e-3, -1.0])), "lr_max"),
        (dict(lr_max=slice(1e-3, 1e-2)), "lr_max"),
    ],
)
def test_one_cycle_rejects(kwargs, name):
    args = dict(n_steps=10, lr_max=1e-3) | kwargs
    with pytest.raises(ValueError) as e:
        one_cycle(**args)
    msg = str(e.value)
    assert msg.startswith(name + " ") and repr(kwargs[name]) in msg


def test_even_mults():
    np.testing.assert_array_equal(even_mults(1e-4, 1e-2, 1), [1e-2])
    np.testing.assert_allclose(even_mults(1e-4, 1e-2, 3), [1e-4, 1e-3, 1e-2], rtol=1e-12)
    step = (1e-1 / 1e-5) ** (1 / 4)  # fastai: start * step**i
    np.testing.assert_allclose(even_mults(1e-5, 1e-1, 5), [1e-5 * step**i for i in range(5)], rtol=1e-12)
    out = even_mults(1e-2, 1e-4, 3)
    assert out[0] == 1e-2 and out[-1] == 1e-4 and out[1] == approx(1e-3)


def test_lr_per_group_number():
    for lr in (3e-3, 3, np.float64(3e-3)):
        out = lr_per_group(lr, 4)
        assert out.dtype == np.float64 and out.tolist() == [float(lr)] * 4


def test_lr_per_group_slices():
    out = lr_per_group(slice(1e-4, 1e-2), 3)
    np.testing.assert_allclose(out, [1e-4, 1e-3, 1e-2], rtol=1e-12)
    assert out[-1] == 1e-2 and out.dtype == np.float64
    assert lr_per_group(slice(None, 1e-2), 3).tolist() == [1e-3, 1e-3, 1e-2]
    assert lr_per_group(slice(1e-4, 1e-2), 1).tolist() == [1e-2]
    assert lr_per_group(slice(None, 1e-2), 1).tolist() == [1e-2]
    assert lr_per_group(1e-2, 1).tolist() == [1e-2]


def test_lr_per_group_reversed_slice_warns_once_per_call():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = lr_per_group(slice(1e-2, 1e-4), 3)
        assert len(w) == 1
        lr_per_group(slice(1e-2, 1e-4), 3)
        assert len(w) == 2
    np.testing.assert_allclose(out, [1e-2, 1e-3, 1e-4], rtol=1e-12)  # as fastai: a for the first group
    msg = str(w[0].message)
    assert w[0].category is UserWarning and "\n" not in msg
    assert "earlier layers get the higher learning rate" in msg and "slice(0.01, 0.0001)" in msg
    assert w[0].filename == __file__  # points at the caller


def test_lr_per_group_reversed_slice_default_filter_once_per_location():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("default")
        for _ in range(3):
            lr_per_group(slice(1e-2, 1e-4), 3)
    assert len(w) == 1


def test_lr_per_group_no_warning_when_ordered_or_one_group():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lr_per_group(slice(1e-4, 1e-2), 3)
        lr_per_group(slice(1e-3, 1e-3), 3)
        assert lr_per_group(slice(1e-2, 1e-4), 1).tolist() == [1e-4]


nan, inf = float("nan"), float("inf")


@pytest.mark.parametrize(
    "lr, shown, exc",
    [
        (0, "0", ValueError),
        (-1, "-1", ValueError),
        (nan, "nan", ValueError),
        (inf, "inf", ValueError),
        (-inf, "-inf", ValueError),
        ("a", "'a'", TypeError),
        (True, "True", TypeError),
        (None, "None", TypeError),
        (slice(1e-3, nan), "slice(0.001, nan)", ValueError),
        (slice(0, 1e-2), "slice(0, 0.01)", ValueError),
        (slice(-1e-3, 1e-2), "slice(-0.001, 0.01)", ValueError),
        (slice(1e-3, None), "slice(0.001, None)", TypeError),
        (slice(None, None), "slice(None, None)", TypeError),
        (slice(True, 1e-2), "slice(True, 0.01)", TypeError),
        (slice("a", 1e-2), "slice('a', 0.01)", TypeError),
        (slice(None, inf), "slice(None, inf)", ValueError),
    ],
)
def test_lr_per_group_rejects(lr, shown, exc):
    with pytest.raises(exc) as e:
        lr_per_group(lr, 3)
    msg = str(e.value)
    assert re.search(rf"^lr_max .*positive finite.*, got {re.escape(shown)}(;|$)", msg), msg
    hinted = "None lr" in msg and "lr_find suggestion" in msg and "res.reasons" in msg
    assert hinted == (shown in ("None", "slice(0.001, None)", "slice(None, None)")), msg


def test_lr_per_group_takes_one_lr_per_group_as_fastai():
    assert lr_per_group([1e-4, 1e-3, 1e-2], 3).tolist() == [1e-4, 1e-3, 1e-2]
    assert lr_per_group(np.array([1e-4, 1e-2]), 2).tolist() == [1e-4, 1e-2]
    assert lr_per_group(np.array(1e-3), 2).tolist() == [1e-3, 1e-3]  # a 0-d array is a number
    with pytest.raises(ValueError, match=r"has 2 learning rates.*3 layer groups"):
        lr_per_group([1e-4, 1e-3], 3)
    with pytest.raises(ValueError, match=r"positive finite"):
        lr_per_group([1e-4, -1.0], 2)
    with pytest.raises(TypeError, match=r"positive finite"):
        lr_per_group([1e-4, "a"], 2)


@pytest.mark.parametrize("moms", [(0.95, 0.85), (0.95, 0.85, 1.5), (0.9, -0.1, 0.9), "abc", None, (0.9, 0.8, True)])
def test_one_cycle_refuses_bad_moms_by_name(moms):
    with pytest.raises(ValueError, match=rf"^moms .*three momenta.*\[0, 1\).*got {re.escape(repr(moms))}"):
        one_cycle(10, 1e-3, moms=moms)


def test_lr_per_group_rejects_step_and_bad_groups_and_names_argument():
    with pytest.raises(ValueError, match=r"without a step, got slice\(0.001, 0.01, 2\)"):
        lr_per_group(slice(1e-3, 1e-2, 2), 3)
    with pytest.raises(ValueError, match="n_groups"):
        lr_per_group(1e-3, 0)
    with pytest.raises(ValueError, match=r"^lr must be"):
        lr_per_group(nan, 2, name="lr")
