"""Bad input to the Learner and the data helpers: refused early, by name, with what to do instead."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrwidget import DataLoaders, Learner, accuracy
from lrwidget.data import digits


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (
            {"loss_func": nn.CrossEntropyLoss},
            TypeError,
            r"loss_func is the class CrossEntropyLoss: pass an instance, "
            r"loss_func=CrossEntropyLoss\(\)",
        ),
        ({"loss_func": "cross_entropy"}, TypeError, r"loss_func must be callable"),
        ({"metrics": "accuracy"}, TypeError, r"each metric must be a function.*got 'accuracy'"),
        ({"metrics": [accuracy, 3]}, TypeError, r"each metric must be a function.*got 3"),
        ({"moms": (0.95, 0.85)}, ValueError, r"moms must be three momenta"),
        (
            {"splitter": lambda m: list(m.parameters())},
            TypeError,
            r"splitter must return a list of parameter lists.*got a list holding Parameter \(wrap it",
        ),
        ({"splitter": lambda m: [[m[0].weight.detach()]]}, TypeError, r"a group holds Tensor, not nn.Parameter"),
        ({"splitter": lambda m: m}, TypeError, r"splitter must return a list of parameter lists.*got Sequential"),
        ({"splitter": lambda m: [[], []]}, ValueError, r"the splitter gave no parameters"),
    ],
)
def test_bad_learner_arguments_are_refused_at_once(kw, error, match):
    with pytest.raises(error, match=match):
        Learner(digits(), mlp(), device="cpu", **kw)


def test_a_splitter_may_give_generators_of_parameters():
    learn = Learner(digits(), mlp(), device="cpu", splitter=lambda m: [m[0].parameters(), m[2].parameters()])
    assert [len(g) for g in learn.layer_groups] == [2, 2]


def test_class_targets_with_an_extra_dimension_say_to_squeeze_them():
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64, 1))
    learn = Learner(DataLoaders.from_tensors(x, y, bs=16), mlp(), device="cpu")
    with pytest.raises(
        ValueError,
        match=r"class targets have shape \(16, 1\), an extra dimension of size 1: "
        r"CrossEntropyLoss wants shape \(16,\); make the dataset yield y.squeeze\(1\)",
    ):
        learn.fit(1)


def test_a_metric_that_returns_one_value_per_sample_is_named():
    def per_sample(out, y):
        return (out.argmax(1) == y).float()

    learn = Learner(digits(), mlp(), device="cpu", metrics=per_sample)
    with pytest.raises(
        ValueError,
        match=r"per_sample returned shape \(64,\) for a validation batch; a loss or "
        r"metric must return one number per batch",
    ):
        learn.validate()


def test_save_to_a_folder_is_refused(tmp_path):
    learn = Learner(digits(), mlp(), device="cpu")
    with pytest.raises(IsADirectoryError, match=r"is a folder: give a file name, e.g. .*model.pth"):
        learn.save(tmp_path)
    assert list(tmp_path.iterdir()) == [], "nothing written beside it"


def test_from_tensors_refuses_half_a_validation_set_or_mismatched_lengths():
    x, y = torch.randn(20, 4), torch.randn(20)
    with pytest.raises(ValueError, match="give both x_valid and y_valid"):
        DataLoaders.from_tensors(x, y, x[:5])
    with pytest.raises(ValueError, match="x_train has 20 samples but y_train has 19"):
        DataLoaders.from_tensors(x, y[:19])
    with pytest.raises(ValueError, match="x_valid has 5 samples but y_valid has 4"):
        DataLoaders.from_tensors(x, y, x[:5], y[:4])


def test_digits_valid_pct():
    assert digits(valid_pct=0).valid is None
    assert len(digits(valid_pct=0).train.dataset) == 1797
    for bad in (1, 1.5, -0.1, "0.2", True):
        with pytest.raises(ValueError, match=r"valid_pct must be a fraction in \[0, 1\)"):
            digits(valid_pct=bad)
