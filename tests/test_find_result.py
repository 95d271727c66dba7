"""LRFindResult: a real, immutable tuple of the suggestions it unpacks to, carrying the curve."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from lrwidget import Learner, LRFindResult
from lrwidget.core.find_result import ALL_FIELDS, apply_suggest_funcs
from lrwidget.core.suggest import minimum, slide, steep, valley
from lrwidget.data import digits

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def learn() -> Learner:
    torch.manual_seed(0)
    return Learner(digits(), nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), device="cpu")


@pytest.fixture(scope="module")
def res(learn) -> LRFindResult:
    return learn.lr_find(num_it=60, show_plot=False)


def test_it_is_a_tuple_of_the_suggestions_it_unpacks_to(res):
    assert isinstance(res, tuple) and len(res) == 2
    lr_min, lr_steep = res
    assert (lr_min, lr_steep) == (res.lr_min, res.lr_steep) == (res[0], res[1]) == tuple(res)
    assert res._fields == ("lr_min", "lr_steep") and res._asdict() == {"lr_min": lr_min, "lr_steep": lr_steep}
    assert len(res.lrs) == len(res.losses) == 60 and res.num_it == 60


def test_it_cannot_be_changed_so_its_hash_never_does(res):
    h = hash(res)
    with pytest.raises(AttributeError, match=r"cannot be changed.*_replace"):
        res.lr_min = 1.0
    with pytest.raises(ValueError, match="read-only"):
        res.losses[0] = 0.0
    with pytest.raises(TypeError):
        res.reasons["lr_min"] = "changed"
    with pytest.raises(TypeError):
        res.points["lr_min"] = (1.0, 1.0)
    asked = apply_suggest_funcs(res, (valley, slide))
    assert hash(res) == h and tuple(res) == (res.lr_min, res.lr_steep), "the result asked about is unchanged"
    assert tuple(asked) == (res.valley, res.slide) and hash(asked) == hash((res.valley, res.slide))


def test_replace_pickle_and_deepcopy_give_equal_results(res):
    assert pickle.loads(pickle.dumps(res)) == res and copy.deepcopy(res) == res
    other = res._replace(lr_steep=0.5)
    assert other.lr_steep == 0.5 and tuple(other) == (res.lr_min, 0.5) and other != res
    assert np.array_equal(other.lrs, res.lrs)
    with pytest.raises(TypeError, match="no field 'lr_max'"):
        res._replace(lr_max=1.0)


def test_with_suggest_funcs_it_holds_those_in_their_order(res):
    asked = apply_suggest_funcs(res, (steep, minimum, valley, slide))
    assert asked._fields == ("lr_steep", "lr_min", "valley", "slide")
    assert tuple(asked) == (res.steep, res.minimum, res.valley, res.slide)
    assert asked == (res.lr_steep, res.lr_min, res.valley, res.slide)


def half_min(lrs, losses, num_it):
    """A suggest_func of a name fastai lacks: its suggestion is kept in `extra`."""
    return float(lrs[losses.argmin()]) / 2


def assert_same(back, res):
    assert back == res and tuple(back) == tuple(res) and back.suggestions == res.suggestions
    assert (back.order, back.extra, back.points, back.reasons) == (res.order, res.extra, res.points, res.reasons)
    assert (back.num_it, back.end_reason) == (res.num_it, res.end_reason)


def test_to_dict_is_plain_json_and_from_dict_rebuilds_an_equal_result(res):
    d = res.to_dict()
    assert (d["format"], d["version"]) == ("lrwidget.LRFindResult", 2) and list(d)[2:] == list(ALL_FIELDS)
    loaded = json.loads(json.dumps(d, allow_nan=False))
    assert loaded == d
    assert_same(LRFindResult.from_dict(loaded), res)


def test_nan_and_inf_are_written_as_strings_and_read_back(res):
    losses = res.losses.copy()
    losses[[3, 4, 5]] = np.nan, np.inf, -np.inf
    odd = res._replace(losses=losses, lr_steep=None, points={**res.points, "lr_min": (1e-3, np.inf)})
    d = odd.to_dict()
    assert d["losses"][3:6] == ["nan", "inf", "-inf"] and d["lr_steep"] is None and d["points"]["lr_min"][1] == "inf"
    back = LRFindResult.from_dict(json.loads(json.dumps(d, allow_nan=False)))
    assert_same(back, odd)
    assert np.isnan(back.losses[3]) and back.losses[4] == np.inf and back.losses[5] == -np.inf


def test_a_result_of_suggest_funcs_keeps_its_order_and_extra(learn):
    asked = learn.lr_find(num_it=60, suggest_funcs=(valley, slide, half_min), show_plot=False)
    assert asked.order == ("valley", "slide", "half_min") and set(asked.extra) == {"half_min"}
    back = LRFindResult.from_dict(json.loads(json.dumps(asked.to_dict(), allow_nan=False)))
    assert_same(back, asked)
    assert back._fields == asked._fields and back.half_min == asked.half_min


DROP = object()  # a key to leave out


def broken(d, **changes):
    """`d` with some keys changed, or dropped."""
    return {k: v for k, v in {**d, **changes}.items() if v is not DROP}


def test_from_dict_refuses_what_is_not_a_dict(res):
    with pytest.raises(TypeError, match="from_dict takes a dict.*got list"):
        LRFindResult.from_dict([res.to_dict()])


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"format": "something.else"}, r"not an lrwidget lr_find result: format is 'something.else'"),
        ({"format": DROP}, "not an lrwidget lr_find result"),
        ({"version": 3}, r"version 3 is newer than this lrwidget reads \(2\)"),
        ({"version": DROP}, r"version must be an int >= 1, got None"),
        ({"version": "1"}, r"version must be an int >= 1, got '1' \(str\)"),
        ({"losses": DROP}, "needs the key 'losses'"),
        ({"lrs": "0.1, 0.2"}, "lrs must be a list of numbers, got '0.1, 0.2'"),
        ({"lrs": [1e-7, "0.2"]}, r"lrs\[1\] must be a number \(\"nan\", \"inf\" or \"-inf\" where not finite\)"),
        ({"lrs": [1e-7, None]}, r"lrs\[1\] must be a number \("),
        ({"lrs": [1e-7, True]}, r"lrs\[1\] must be a number"),
        (
            {"lrs": [1e-7, 1e-6]},
            "lrs, losses and raw_losses must be lists of the same length, got lrs 2, losses 60",
        ),
        ({"num_it": 60.0}, r"num_it must be an int >= 0, got 60.0 \(float\)"),
        ({"lr_min": "small"}, r"lr_min must be a number or None"),
        ({"extra": {"half_min": [0.1]}}, r"extra\['half_min'\] must be a number or None"),
        ({"reasons": {"lr_min": 3}}, r"reasons\['lr_min'\] must be a str, got 3 \(int\)"),
        ({"points": {"lr_min": [0.1]}}, r"points\['lr_min'\] must be a list \[lr, loss\] of two numbers"),
        ({"points": []}, r"points must be a dict with str keys, got \[\] \(list\)"),
        ({"end_reason": None}, "end_reason must be a str"),
        (
            {"order": ["lr_min", "lr_max"]},
            r"order names 'lr_max': not one of \('lr_min'.*'minimum'.* nor a key of extra",
        ),
    ],
)
def test_from_dict_refuses_a_corrupt_dict_naming_the_key(res, changes, match):
    with pytest.raises(ValueError, match=match):
        LRFindResult.from_dict(broken(res.to_dict(), **changes))


def test_order_may_name_fastai_names_and_keys_of_extra(res):
    d = {**res.to_dict(), "order": ["minimum", "valley", "half_min"], "extra": {"half_min": None}}
    back = LRFindResult.from_dict(d)
    assert tuple(back) == (res.lr_min, res.valley, None) and back.extra == {"half_min": None}
