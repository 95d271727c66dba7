"""LRFindResult: a real, immutable tuple of the suggestions it unpacks to, carrying the curve."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from lrwidget import Learner, LRFindResult
from lrwidget.data import digits
from lrwidget.find_result import apply_suggest_funcs
from lrwidget.suggest import minimum, slide, steep, valley

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def res() -> LRFindResult:
    torch.manual_seed(0)
    learn = Learner(digits(), nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), device="cpu")
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
