"""vision_learner over timm: names and model functions built by timm.create_model, fastai's head, body/head groups."""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm
import timm.models._builder
import torch
from test_vision import small_image_dls

from lrwidget import accuracy, vision_learner
from lrwidget.integrations.timm_models import TimmBody


def first_conv(module: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))


def test_a_timm_name_builds_through_timm_with_fastais_head_in_two_groups():
    learn = vision_learner(small_image_dls(n=64, size=32), "resnet18", pretrained=False)
    body, head = learn.model
    assert isinstance(body, TimmBody) and body.needs_pool
    assert type(body.model) is timm.models.resnet.ResNet and body.model.num_classes == 0
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 512), (512, 10)]  # concat pool of 512
    assert [{id(p) for p in g} for g in learn.layer_groups] == [
        {id(p) for p in body.parameters()},
        {id(p) for p in head.parameters()},
    ]
    assert sum(len(g["params"]) for g in learn.opt.param_groups) == len(list(learn.model.parameters()))
    assert all(p.requires_grad for p in learn.model.parameters())  # not pretrained: nothing frozen
    assert learn.model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_a_timm_model_function_builds_by_its_name():
    learn = vision_learner(small_image_dls(n=64, size=32), timm.models.resnet10t, pretrained=False, n_out=4)
    assert type(learn.model[0].model) is timm.models.resnet.ResNet
    assert learn.model[1][-1].out_features == 4 and len(learn.layer_groups) == 2


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_one_cycle_on_a_timm_model_learns_the_digits():
    torch.manual_seed(0)
    learn = vision_learner(small_image_dls(n=512, size=32), "resnet10t", pretrained=False, metrics=accuracy)
    learn.fit_one_cycle(4, 1e-2)
    train_losses = [v[0] for v in learn.recorder.values]
    assert train_losses[-1] < train_losses[0] / 2
    assert learn.recorder.values[-1][2] > 0.7  # 10 classes: chance is 0.1


def test_one_channel_data_gives_timm_in_chans_1():
    dls = small_image_dls(n=64, size=32, channels=1)
    learn = vision_learner(dls, "resnet10t", pretrained=False)
    assert first_conv(learn.model).in_channels == 1
    learn.fit(1, 1e-3)
    assert len(learn.recorder.values) == 1
    assert first_conv(vision_learner(dls, "resnet10t", pretrained=False, n_in=3).model).in_channels == 3


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_freeze_trains_only_the_head_and_the_norm_layers():
    learn = vision_learner(small_image_dls(n=128, size=32), "resnet10t", pretrained=False)
    learn.freeze()
    body, head = learn.model
    conv = first_conv(body)
    assert not conv.weight.requires_grad and all(p.requires_grad for p in head.parameters())
    bn = next(m for m in body.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.weight.requires_grad  # train_bn, as fastai
    conv_before = conv.weight.detach().clone()
    head_before = [p.detach().clone() for p in head.parameters()]
    learn.fit(1, 1e-3)
    assert torch.equal(conv.weight, conv_before)
    assert all(not torch.equal(a, b) for a, b in zip(head_before, head.parameters()))
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())


def test_pretrained_loads_timms_weights_and_freezes_the_body(monkeypatch):
    loaded = []
    monkeypatch.setattr(timm.models._builder, "load_pretrained", lambda model, *a, **k: loaded.append(model))
    learn = vision_learner(small_image_dls(n=64, size=32), "resnet10t", pretrained=True)
    assert loaded and loaded[0] is learn.model[0].model
    assert not first_conv(learn.model).weight.requires_grad
    assert all(p.requires_grad for p in learn.model[1].parameters())


def test_pretrained_without_network_says_to_pass_pretrained_false(monkeypatch):
    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")  # what huggingface_hub says offline

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    with pytest.raises(OSError, match="couldn't connect") as e:
        vision_learner(small_image_dls(n=64, size=32), "resnet10t", pretrained=True)
    (note,) = e.value.__notes__
    assert "timm's resnet10t" in note and "pass pretrained=False" in note


def test_an_error_of_timm_that_is_not_about_weights_keeps_its_type_without_a_note(monkeypatch):
    def bug(*a, **k):
        raise KeyError("a bug in the model config")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", bug)
    with pytest.raises(KeyError, match="a bug in the model config") as e:
        vision_learner(small_image_dls(n=64, size=32), "resnet10t", pretrained=True)
    assert not getattr(e.value, "__notes__", None)


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_parameters_forward_features_never_uses_are_dropped_so_every_parameter_trains():
    # mobilenetv3's conv_head comes after the pooling: fastai keeps it unused in the body, DDP would refuse it
    with torch.no_grad():  # the probe that finds them still works in a caller's no_grad
        learn = vision_learner(small_image_dls(n=64, size=32), "mobilenetv3_small_050", pretrained=False)
    assert isinstance(learn.model[0].model.conv_head, torch.nn.Identity)
    learn.model.train()
    learn.model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert [n for n, p in learn.model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize(
    "name, kwargs",
    [("vit_tiny_patch16_224", {"img_size": 32}), ("swin_tiny_patch4_window7_224", {"img_size": 32, "window_size": 2})],
)
@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_models_timm_pools_itself_get_a_head_without_pooling(name, kwargs):
    # a ViT gives tokens and swin channels-last maps: the body is timm's pooled features, as fastai's TimmBody
    learn = vision_learner(small_image_dls(n=64, size=32), name, pretrained=False, **kwargs)
    body, head = learn.model
    assert not body.needs_pool
    assert isinstance(head[0], torch.nn.BatchNorm1d) and head[0].num_features == body.model.num_features
    assert learn.model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_other_keywords_go_to_timm_create_model_and_are_named_when_it_refuses():
    learn = vision_learner(small_image_dls(n=64, size=32), "resnet10t", pretrained=False, drop_rate=0.3, wd=0.1)
    assert learn.model[0].model.drop_rate == 0.3
    assert all(g["weight_decay"] == 0.1 for g in learn.opt.param_groups if not g.get("wd_exempt"))
    with pytest.raises(TypeError, match=r"passes colour= on to timm.create_model\('resnet10t'\)"):
        vision_learner(small_image_dls(n=64, size=32), "resnet10t", pretrained=False, colour=1)
    with pytest.raises(TypeError, match=r"does not take cut= with timm's resnet10t"):
        vision_learner(small_image_dls(n=64, size=32), "resnet10t", pretrained=False, cut=-2)


def test_images_a_timm_model_cannot_take_are_refused_at_construction():
    with pytest.raises(ValueError, match=r"vit_tiny_patch16_224 does not take 32x32 images.*img_size="):
        vision_learner(small_image_dls(n=64, size=32), "vit_tiny_patch16_224", pretrained=False)


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_a_name_timm_does_not_know_but_torchvision_does_builds_torchvisions():
    learn = vision_learner(small_image_dls(n=64, size=32), "regnet_x_400mf", pretrained=False)
    assert type(learn.model[0]) is torch.nn.Sequential and type(learn.model[0][0]).__module__.startswith("torchvision")


def test_an_unknown_name_is_refused_naming_it_and_close_names():
    with pytest.raises(ValueError, match=r"no model is named 'resnet19x'.*did you mean 'resnet18'"):
        vision_learner(small_image_dls(n=64, size=32), "resnet19x", pretrained=False)


@pytest.mark.parametrize(
    "name, match",
    [
        ("mobilenetv3_small_050", r"looks the name up in timm, which is not installed: pip install timm"),
        ("resnet18", r"pip install timm .*or pass the function torchvision.models.resnet18"),
    ],
)
def test_a_name_without_timm_says_pip_install_timm(name, match, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now fails as where it is not installed
    with pytest.raises(ImportError, match=match):
        vision_learner(small_image_dls(n=64, size=32), name, pretrained=False)
    from torchvision.models import resnet18

    assert (
        len(vision_learner(small_image_dls(n=64, size=32), resnet18, pretrained=False).layer_groups) == 3
    )  # no timm needed


def test_importing_lrwidget_does_not_import_timm():
    code = "import sys, lrwidget; from lrwidget import *; print('timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
