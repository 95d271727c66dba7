"""Bad input to the Learner and the data helpers: refused early, by name, with what to do instead."""

from __future__ import annotations

import re

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
            r"loss_func is the class CrossEntropyLoss.*pass an instance.*loss_func=CrossEntropyLoss\(\)",
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
        match=r"\(16, 1\).*extra dimension.*CrossEntropyLoss.*\(16,\).*y\.squeeze\(1\)",
    ):
        learn.fit(1)


def test_a_metric_that_returns_one_value_per_sample_is_named():
    def per_sample(out, y):
        return (out.argmax(1) == y).float()

    learn = Learner(digits(), mlp(), device="cpu", metrics=per_sample)
    with pytest.raises(
        ValueError,
        match=r"per_sample.*\(64,\).*validation batch.*one number per batch",
    ):
        learn.validate()


def test_save_to_a_folder_is_refused(tmp_path):
    learn = Learner(digits(), mlp(), device="cpu")
    with pytest.raises(IsADirectoryError, match=r"is a folder.*file name.*model\.pth"):
        learn.save(tmp_path)
    assert list(tmp_path.iterdir()) == [], "nothing written beside it"


def test_from_tensors_refuses_half_a_validation_set_or_mismatched_lengths():
    x, y = torch.randn(20, 4), torch.randn(20)
    with pytest.raises(ValueError, match="give both x_valid and y_valid"):
        DataLoaders.from_tensors(x, y, x[:5])
    with pytest.raises(ValueError, match=r"x_train has 20\b.*y_train has 19\b"):
        DataLoaders.from_tensors(x, y[:19])
    with pytest.raises(ValueError, match=r"x_valid has 5\b.*y_valid has 4\b"):
        DataLoaders.from_tensors(x, y, x[:5], y[:4])


def test_digits_valid_pct():
    assert digits(valid_pct=0).valid is None
    assert len(digits(valid_pct=0).train.dataset) == 1797
    for bad in (1, 1.5, -0.1, "0.2", True):
        with pytest.raises(ValueError, match=rf"valid_pct.*\[0, 1\).*got {re.escape(repr(bad))}"):
            digits(valid_pct=bad)


# -- the user's own errors keep their type and message -------------------------------------------------------


def weights(learn: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learn.model.parameters()]


RUNS = {
    "lr_find": lambda learn: learn.lr_find(num_it=20, show_plot=False),
    "fit": lambda learn: learn.fit(1, 1e-3),
    "fit_one_cycle": lambda learn: learn.fit_one_cycle(1, 1e-3),
    "fine_tune": lambda learn: learn.fine_tune(1),
    "validate": lambda learn: learn.validate(),
}


def raising(error: BaseException, after: int = 0):
    """A function that works `after` times (as cross-entropy), then raises `error`."""
    calls = []

    def f(out, y):
        calls.append(1)
        if len(calls) > after:
            raise error
        return nn.functional.cross_entropy(out, y)

    return f


@pytest.mark.parametrize("run", RUNS)
def test_an_error_raised_by_the_loss_keeps_its_type_and_message(run):
    error = RuntimeError("boom")
    learn = Learner(digits(), mlp(), loss_func=raising(error, after=2), device="cpu")
    before = weights(learn)
    with pytest.raises(RuntimeError) as e:
        RUNS[run](learn)
    assert e.value is error and str(e.value) == "boom" and not getattr(e.value, "__notes__", None)
    if run == "lr_find":
        assert all(torch.equal(a, b) for a, b in zip(before, weights(learn))), "lr_find restores after an error"
    if run != "validate":
        assert learn.run.end_reason == "error"


@pytest.mark.parametrize("run", ["lr_find", "fit_one_cycle", "validate"])
def test_out_of_memory_keeps_its_type_and_gains_a_hint(run):
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    learn = Learner(digits(), mlp(), loss_func=raising(error), device="cpu")
    with pytest.raises(torch.OutOfMemoryError, match="Tried to allocate 2.00 GiB") as e:
        RUNS[run](learn)
    notes = " ".join(e.value.__notes__)
    assert "smaller batch size" in notes and "mixed_precision='bf16'" in notes
    with pytest.raises(torch.OutOfMemoryError) as again:  # the hint is added once, however often it passes by
        RUNS[run](learn)
    assert len(again.value.__notes__) == 1


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 10)

    def forward(self, x):
        if x.shape[0] < 64:
            raise IndexError("the model wants full batches")
        return self.lin(x)


class Samples(torch.utils.data.Dataset):
    def __len__(self):
        return 128

    def __getitem__(self, i):
        if i == 100:
            raise KeyError("sample 100 is missing")
        return torch.zeros(64), 0


def test_errors_of_the_model_the_metric_and_the_data_keep_their_type_and_message():
    dls = digits()
    learn = Learner(dls, Model(), device="cpu")
    with pytest.raises(IndexError, match="^the model wants full batches$"):  # the last validation batch is short
        learn.fit(1, 1e-3)

    def metric(out, y):
        raise ZeroDivisionError("the metric divides by zero")

    with pytest.raises(ZeroDivisionError, match="^the metric divides by zero$"):
        Learner(dls, mlp(), metrics=metric, device="cpu").fit(1, 1e-3)
    data = DataLoaders(torch.utils.data.DataLoader(Samples(), batch_size=32))
    with pytest.raises(KeyError, match="sample 100 is missing"):
        Learner(data, mlp(), device="cpu").lr_find(show_plot=False)


def test_a_proven_shape_mismatch_still_names_both_shapes():
    x, y = torch.randn(64, 64), torch.randn(64, 3)
    learn = Learner(DataLoaders.from_tensors(x, y, bs=16), mlp(), loss_func=nn.MSELoss(), device="cpu")
    with pytest.raises(ValueError, match=r"output.*\(16, 10\).*target.*\(16, 3\)"):
        learn.fit(1)
