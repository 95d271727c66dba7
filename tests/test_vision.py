"""vision_learner / cnn_learner over torchvision, and the article's snippets run as written."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision.models._api
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models import resnet18, resnet34

from lrwidget import *  # noqa: F403 - the article's import
from lrwidget import DataLoaders, vision_learner
from lrwidget.data import digits


def small_image_dls(n: int = 256, size: int = 16, channels: int = 3) -> DataLoaders:
    """A few digits as images (3 channels unless told): 'dls built from any torch data'."""
    full = digits(images=True, size=size, channels=channels)
    x, y = full.train.dataset.tensors
    xv, yv = full.valid.dataset.tensors
    g = torch.Generator().manual_seed(0)
    return DataLoaders(
        DataLoader(TensorDataset(x[:n], y[:n]), batch_size=64, shuffle=True, drop_last=True, generator=g),
        DataLoader(TensorDataset(xv[:128], yv[:128]), batch_size=64),
    )


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_article_snippet_one_runs_as_written():
    dls = small_image_dls()
    torch.manual_seed(0)
    learn = cnn_learner(dls, resnet34, metrics=accuracy, pretrained=False)
    lr_min, lr_steep = learn.lr_find()
    learn.fit_one_cycle(10, lr_max=slice(lr_min, lr_steep))
    assert len(learn.recorder.values) == 10
    assert learn.recorder.metric_names[-2] == "accuracy"
    assert learn.recorder.values[-1][2] > 0.3  # 256 samples of 16x16, from scratch: better than chance


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_article_snippet_two_runs_as_written():
    import bqplot

    dls = small_image_dls(n=128)
    torch.manual_seed(0)
    learn = cnn_learner(dls, resnet34, metrics=accuracy, pretrained=False)
    learn.lr_find()
    fig = learn.recorder.plot_loss()
    assert isinstance(fig, bqplot.Figure) and len(fig.marks[0].y) > 0
    assert isinstance(learn.recorder.plot_lr_find(), bqplot.Figure)


def test_cnn_learner_is_vision_learner_with_resnet_groups():
    assert cnn_learner is vision_learner
    learn = vision_learner(small_image_dls(), resnet18, pretrained=False)
    assert len(learn.layer_groups) == 3  # early body, late body, head (fastai's split)
    assert learn.model[1][-1].out_features == 10  # n_out inferred from the data
    n_params = sum(len(g) for g in learn.layer_groups)
    assert n_params == len(list(learn.model.parameters())) == sum(len(g["params"]) for g in learn.opt.param_groups)
    body = learn.model[0]
    assert {id(p) for p in learn.layer_groups[0]} == {id(p) for p in body[:6].parameters()}
    assert all(p.requires_grad for p in learn.model.parameters())  # not pretrained: nothing frozen


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_one_channel_images_adapt_the_first_conv():
    dls = digits(images=True, size=16)  # (1, 16, 16)
    learn = vision_learner(dls, resnet18, pretrained=False, n_out=10)
    assert learn.model[0][0].in_channels == 1
    learn.fit(1, 1e-3)
    assert len(learn.recorder.values) == 1


def test_pretrained_without_network_says_to_pass_pretrained_false(monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("Temporary failure in name resolution")  # what an offline machine sees

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(urllib.error.URLError, match="Temporary failure in name resolution") as e:
        vision_learner(small_image_dls(), resnet18, pretrained=True)
    (note,) = e.value.__notes__  # the error as raised, with what to do
    assert "could not load the pretrained weights of resnet18" in note and "pass pretrained=False" in note


class ArchBug(Exception):
    pass


def test_an_error_of_the_model_function_is_not_called_a_weights_problem():
    def arch(weights=None):
        raise ArchBug("a typo in the model's own code")

    with pytest.raises(ArchBug, match="a typo in the model's own code") as e:
        vision_learner(small_image_dls(), arch, pretrained=True)
    assert not getattr(e.value, "__notes__", None), "nothing about weights or networks is added"


class BrokenImages(torch.utils.data.Dataset):
    """A dataset whose items cannot be read (a missing file, say): its own error must reach the user."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        raise FileNotFoundError(f"images/{i}.png")


def test_a_dataset_that_fails_keeps_its_error_instead_of_a_channels_guess():
    broken = DataLoader(BrokenImages(), batch_size=4)
    with pytest.raises(FileNotFoundError, match="images/0.png"):
        vision_learner(DataLoaders(broken, broken), resnet18, n_out=10, pretrained=False)


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_pretrained_freezes_the_body_but_not_batchnorm(monkeypatch):
    weights = resnet18().state_dict()
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda *a, **k: weights)
    learn = vision_learner(small_image_dls(), resnet18, pretrained=True)
    body, head = learn.model
    assert all(p.requires_grad for p in head.parameters())
    assert not body[0].weight.requires_grad and body[1].weight.requires_grad  # conv frozen, bn trains
    assert torch.equal(body[0].weight, weights["conv1.weight"])
    frozen = body[0].weight.detach().clone()
    learn.fit(1, 1e-3)
    assert torch.equal(frozen, body[0].weight)
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())


def test_n_out_must_be_given_when_it_cannot_be_inferred():
    batches = [(torch.randn(4, 3, 16, 16), torch.randint(0, 3, (4,)))]
    with pytest.raises(ValueError, match="pass n_out="):
        vision_learner(DataLoaders(batches), resnet18, pretrained=False)


def test_fastais_head_arguments_build_its_head():
    from lrwidget.integrations.vision import SigmoidRange

    dls = small_image_dls(n=64)
    learn = vision_learner(
        dls,
        resnet18,
        pretrained=False,
        lin_ftrs=[256, 128],
        ps=[0.1, 0.2, 0.3],
        concat_pool=False,
        y_range=(0, 9),
        wd=0.1,
    )
    head = learn.model[1]
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 256), (256, 128), (128, 10)]
    assert [m.p for m in head if isinstance(m, torch.nn.Dropout)] == [0.1, 0.2, 0.3]
    assert isinstance(head[0], torch.nn.AdaptiveAvgPool2d) and isinstance(head[-1], SigmoidRange)
    out = learn.model(next(iter(dls.train))[0])
    assert out.shape == (64, 10) and out.min() >= 0 and out.max() <= 9
    assert all(g["weight_decay"] == 0.1 for g in learn.opt.param_groups if not g.get("wd_exempt"))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"normalize": True}, r"does not take normalize=.*lrwidget does not change your data"),
        ({"cbs": []}, r"does not take cbs=.*learn.observers"),
        ({"colour": 1}, r"does not take colour=: it takes \["),
    ],
)
def test_fastai_arguments_it_does_not_take_are_named_before_anything_is_built(kw, match, monkeypatch):
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(TypeError, match=match):
        vision_learner(small_image_dls(n=64), resnet18, **kw)


@pytest.mark.parametrize("arch", [resnet18(), 3, b"resnet18"])
def test_an_arch_that_is_not_a_model_function_is_refused(arch):
    with pytest.raises(TypeError, match="arch must be a torchvision model function such as"):
        vision_learner(small_image_dls(n=64), arch, pretrained=False)


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_channels_last_features_are_refused_not_trained_on():
    from torchvision.models import swin_t

    with pytest.raises(ValueError, match=r"channels-last.*not supported.*pass cut="):
        vision_learner(small_image_dls(n=64), swin_t, pretrained=False)


def test_a_splitter_and_a_custom_head_of_ones_own():
    head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(512, 10))
    learn = vision_learner(
        small_image_dls(n=64),
        resnet18,
        pretrained=False,
        custom_head=head,
        splitter=lambda m: [list(m[0].parameters()), list(m[1].parameters())],
    )
    assert learn.model[1] is head and len(learn.layer_groups) == 2


def test_an_arch_that_takes_pretrained_not_weights_says_how_to_wrap_it():
    def my_arch(pretrained=False):
        return resnet18()

    with pytest.raises(TypeError, match=r"my_arch does not take weights=.*lambda weights=None: my_arch\(pretrained="):
        vision_learner(small_image_dls(n=64), my_arch, pretrained=False)
    learn = vision_learner(
        small_image_dls(n=64), lambda weights=None: my_arch(pretrained=weights is not None), pretrained=False
    )
    assert len(learn.layer_groups) == 3
