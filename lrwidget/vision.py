"""vision_learner / cnn_learner: a torchvision architecture cut into a body and a fastai-style head."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .data import DataLoaders
from .learner import Learner


class AdaptiveConcatPool2d(nn.Module):
    """Max and average pooling side by side (fastai's), doubling the features."""

    def __init__(self, size: int = 1):
        super().__init__()
        self.ap, self.mp = nn.AdaptiveAvgPool2d(size), nn.AdaptiveMaxPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)


def create_head(nf: int, n_out: int, lin_ftrs: int = 512, ps: float = 0.5) -> nn.Sequential:
    """fastai's head: concat pooling, then BatchNorm-Dropout-Linear twice."""
    head = nn.Sequential(
        AdaptiveConcatPool2d(), nn.Flatten(),
        nn.BatchNorm1d(nf * 2), nn.Dropout(ps / 2), nn.Linear(nf * 2, lin_ftrs, bias=False), nn.ReLU(inplace=True),
        nn.BatchNorm1d(lin_ftrs), nn.Dropout(ps), nn.Linear(lin_ftrs, n_out, bias=False))
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
    return head


def _load_arch(arch: Callable, pretrained: bool) -> nn.Module:
    name = getattr(arch, "__name__", repr(arch))
    try:
        return arch(weights="DEFAULT" if pretrained else None)
    except Exception as e:
        if pretrained:
            raise RuntimeError(
                f"could not load the pretrained weights of {name} ({type(e).__name__}: {e}). Without internet "
                f"access, pass pretrained=False to train from scratch, or put the weights in torch's hub cache "
                f"({torch.hub.get_dir()}/checkpoints)") from e
        raise


def _body(model: nn.Module, cut: int | None) -> nn.Sequential:
    """The convolutional body: everything before the pooling and classifier."""
    children = list(model.children())
    if cut is not None:
        return nn.Sequential(*children[:cut])
    if hasattr(model, "fc") and hasattr(model, "avgpool"):      # resnet, resnext, wide_resnet, regnet
        return nn.Sequential(*children[:-2])
    if isinstance(getattr(model, "features", None), nn.Module):  # vgg, densenet, mobilenet, efficientnet, convnext
        return nn.Sequential(model.features) if not isinstance(model.features, nn.Sequential) else model.features
    pools = [i for i, c in enumerate(children) if isinstance(c, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    if pools:
        return nn.Sequential(*children[:pools[-1]])
    raise ValueError(f"cannot find where to cut {type(model).__name__} into body and head: pass cut=")


def _adapt_input(body: nn.Module, n_in: int, pretrained: bool) -> None:
    """Give the first convolution `n_in` input channels (summing pretrained RGB weights)."""
    for parent in body.modules():
        for name, c in parent.named_children():
            if isinstance(c, nn.Conv2d):
                if c.in_channels == n_in:
                    return
                new = nn.Conv2d(n_in, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation, c.groups,
                                c.bias is not None)
                if pretrained:
                    with torch.no_grad():
                        w = c.weight.sum(1, keepdim=True) / n_in
                        new.weight.copy_(w.expand(-1, n_in, -1, -1))
                setattr(parent, name, new)
                return


def _n_in(dls: DataLoaders) -> int:
    """Channels of the input images, read from the first sample without touching any random state."""
    ds = getattr(dls.train, "dataset", None)
    try:
        x = ds[0][0]
        return int(x.shape[0]) if isinstance(x, torch.Tensor) and x.ndim == 3 else 3
    except Exception:
        return 3


def vision_learner(dls: DataLoaders, arch: Callable[..., nn.Module], metrics: Any = None, pretrained: bool = True,
                   n_out: int | None = None, n_in: int | None = None, cut: int | None = None,
                   lin_ftrs: int = 512, ps: float = 0.5, **kwargs: Any) -> Learner:
    """A Learner over a torchvision architecture (e.g. `resnet34`) with a new head for `n_out` outputs.

    Parameter groups follow fastai (resnets: early body, late body, head), so `slice(a, b)` gives
    discriminative learning rates; with `pretrained=True` the body is frozen, as in fastai.
    """
    if n_out is None:
        n_out = dls.c
        if n_out is None:
            raise ValueError("could not infer the number of outputs from the data: pass n_out=")
    model = _load_arch(arch, pretrained)
    body = _body(model, cut)
    n_in = n_in or _n_in(dls)
    _adapt_input(body, n_in, pretrained)
    was = body.training
    body.eval()
    with torch.no_grad():
        nf = body(torch.zeros(2, n_in, 64, 64)).shape[1]
    body.train(was)
    net = nn.Sequential(body, create_head(nf, n_out, lin_ftrs, ps))
    resnet_like = hasattr(model, "fc") and hasattr(model, "avgpool") and len(body) > 6

    def splitter(m: nn.Sequential) -> list[list[nn.Parameter]]:
        b, h = m[0], m[1]
        if resnet_like:
            return [list(b[:6].parameters()), list(b[6:].parameters()), list(h.parameters())]
        return [list(b.parameters()), list(h.parameters())]

    learn = Learner(dls, net, metrics=metrics, splitter=splitter, **kwargs)
    if pretrained:
        learn.freeze()
    return learn


cnn_learner = vision_learner
