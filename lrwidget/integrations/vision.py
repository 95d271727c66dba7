"""vision_learner / cnn_learner: a torchvision or timm architecture cut into a body and a fastai-style head."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import IterableDataset

from ..core.data import DataLoaders
from ..core.errors import add_note, weights_unavailable
from ..core.learner import Learner
from .timm_models import resolve_arch, timm_body


class AdaptiveConcatPool2d(nn.Module):
    """Max and average pooling side by side (fastai's), doubling the features."""

    def __init__(self, size: int = 1):
        super().__init__()
        self.ap, self.mp = nn.AdaptiveAvgPool2d(size), nn.AdaptiveMaxPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)


class SigmoidRange(nn.Module):
    """Squash the output into (low, high) with a sigmoid (fastai's, for `y_range`)."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * (self.high - self.low) + self.low


def _lin_bn_drop(n_in: int, n_out: int, bn: bool, p: float, act: nn.Module | None, lin_first: bool) -> list[nn.Module]:
    """fastai's LinBnDrop: BatchNorm, Dropout and Linear (bias only without BatchNorm), then the activation."""
    norm = [nn.BatchNorm1d(n_out if lin_first else n_in)] if bn else []
    drop = [nn.Dropout(p)] if p else []
    lin = [nn.Linear(n_in, n_out, bias=not bn)] + ([act] if act is not None else [])
    return lin + norm + drop if lin_first else norm + drop + lin


def create_head(
    nf: int,
    n_out: int,
    lin_ftrs: Sequence[int] | int | None = None,
    ps: float | Sequence[float] = 0.5,
    pool: bool = True,
    concat_pool: bool = True,
    first_bn: bool = True,
    bn_final: bool = False,
    lin_first: bool = False,
    y_range: tuple[float, float] | None = None,
) -> nn.Sequential:
    """fastai's create_head: (concat) pooling, then BatchNorm-Dropout-Linear blocks down to `n_out`."""
    if pool and concat_pool:
        nf *= 2
    hidden = [512] if lin_ftrs is None else [lin_ftrs] if isinstance(lin_ftrs, int) else list(lin_ftrs)
    sizes = [nf, *hidden, n_out]
    ps = [ps] if isinstance(ps, (int, float)) else list(ps)
    if len(ps) == 1:
        ps = [ps[0] / 2] * (len(sizes) - 2) + ps
    if len(ps) != len(sizes) - 1:
        raise ValueError(
            f"ps must be one dropout probability or one per linear layer ({len(sizes) - 1} here), got {ps!r}"
        )
    layers: list[nn.Module] = (
        [AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1), nn.Flatten()] if pool else []
    )
    if lin_first:
        layers.append(nn.Dropout(ps.pop(0)))
    acts = [nn.ReLU(inplace=True)] * (len(sizes) - 2) + [None]
    for ni, no, bn, p, act in zip(sizes[:-1], sizes[1:], [first_bn] + [True] * len(sizes[1:]), ps, acts):
        layers += _lin_bn_drop(ni, no, bn, p, act, lin_first)
    if lin_first:
        layers.append(nn.Linear(sizes[-2], n_out))
    if bn_final:
        layers.append(nn.BatchNorm1d(sizes[-1], momentum=0.01))
    if y_range is not None:
        layers.append(SigmoidRange(*y_range))
    head = nn.Sequential(*layers)
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
    return head


HEAD_ARGS = ("lin_ftrs", "ps", "pool", "concat_pool", "first_bn", "bn_final", "lin_first", "y_range")
# fastai's vision_learner arguments that lrwidget does not take, with what to do instead
NOT_TAKEN = {
    "normalize": "lrwidget does not change your data: normalise it in your Dataset (for pretrained weights, with "
    "the statistics of torchvision's weights.transforms(), or timm's learn.model[0].model.pretrained_cfg)",
    "weights": "pass pretrained=True for the default weights; a timm name may name its weights ('resnet18.a1_in1k')",
    "cbs": "lrwidget has no callbacks: use learn.observers (lrwidget.learner.Observer)",
    "path": "learn.save(path) takes the whole path",
    "model_dir": "learn.save(path) takes the whole path",
    "init": "the head's linear layers get kaiming_normal_, as fastai's default",
}


def _load_arch(arch: Callable, pretrained: bool) -> nn.Module:
    name = getattr(arch, "__name__", repr(arch))
    try:
        return arch(weights="DEFAULT" if pretrained else None)
    except TypeError as e:
        if "weights" not in str(e):
            raise
        raise TypeError(
            f"{name} does not take weights=, which vision_learner passes as torchvision's model functions "
            f"take it; wrap a function of another signature, e.g. lambda weights=None: "
            f"{name}(pretrained=weights is not None)"
        ) from e
    except Exception as e:
        if pretrained and weights_unavailable(e):
            add_note(
                e,
                f"lrwidget: could not load the pretrained weights of {name}. Without internet access, pass "
                f"pretrained=False to train from scratch, or put the weights in torch's hub cache "
                f"({torch.hub.get_dir()}/checkpoints)",
            )
        raise


def _body(model: nn.Module, cut: int | None) -> nn.Sequential:
    """The convolutional body: everything before the pooling and classifier."""
    children = list(model.children())
    if cut is not None:
        return nn.Sequential(*children[:cut])
    if hasattr(model, "fc") and hasattr(model, "avgpool"):  # resnet, resnext, wide_resnet, regnet
        return nn.Sequential(*children[:-2])
    if isinstance(getattr(model, "features", None), nn.Module):  # vgg, densenet, mobilenet, efficientnet, convnext
        return nn.Sequential(model.features) if not isinstance(model.features, nn.Sequential) else model.features
    pools = [i for i, c in enumerate(children) if isinstance(c, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    if pools:
        return nn.Sequential(*children[: pools[-1]])
    raise ValueError(f"cannot find where to cut {type(model).__name__} into body and head: pass cut=")


# where fastai's model_meta splits a body in two (its _densenet_split, _vgg_split, ...): early and late layers
FASTAI_SPLITS = (("densenet", 7), ("squeezenet", 5), ("alexnet", 6))


def _split_index(arch: Callable, model: nn.Module, body: nn.Sequential) -> int | None:
    """The body index fastai splits this architecture at (three groups with the head), or None for two groups."""
    name = getattr(arch, "__name__", "")
    if hasattr(model, "fc") and hasattr(model, "avgpool") and len(body) > 6:  # fastai's _resnet_split
        return 6
    if name.startswith("vgg") and name.endswith("_bn"):
        return 22
    return next((i for prefix, i in FASTAI_SPLITS if name.startswith(prefix)), None)


@torch.no_grad()
def _load_first_conv(new: torch.Tensor, rgb: torch.Tensor) -> None:
    """fastai's _load_pretrained_weights: 1 channel sums RGB, 2 take R and G x1.5, more keep RGB and zero the rest."""
    n_in = new.shape[1]
    if n_in == 1:
        new.copy_(rgb.sum(1, keepdim=True))
    elif n_in == 2:
        new.copy_(rgb[:, :2] * 1.5)
    else:
        new[:, :3] = rgb
        new[:, 3:].zero_()


def _adapt_input(body: nn.Module, n_in: int, pretrained: bool) -> None:
    """Give the first convolution `n_in` input channels (its pretrained RGB weights spread as fastai does)."""
    for parent in body.modules():
        for name, c in parent.named_children():
            if isinstance(c, nn.Conv2d):
                if c.in_channels == n_in:
                    return
                new = nn.Conv2d(
                    n_in, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation, c.groups, c.bias is not None
                )
                if pretrained:
                    _load_first_conv(new.weight, c.weight)
                setattr(parent, name, new)
                return


def _first_image(dls: DataLoaders) -> torch.Tensor | None:
    """The first training image, (channels, height, width), read without touching any random state; None where the
    data have no first item to read that way (the dataset's own errors reach the user as it raised them)."""
    ds = getattr(dls.train, "dataset", None)
    if ds is None or isinstance(ds, IterableDataset) or not hasattr(ds, "__getitem__"):
        return None
    try:
        if len(ds) == 0:
            return None
    except TypeError:  # a map-style dataset without __len__
        return None
    item = ds[0]
    x = item[0] if isinstance(item, (tuple, list)) and item else None
    return x if isinstance(x, torch.Tensor) and x.ndim == 3 else None


def _torchvision_body(
    arch: Callable, pretrained: bool, cut: int | None, n_in: int
) -> tuple[nn.Sequential, int, int | None]:
    """A torchvision model's body with `n_in` input channels, its number of features and fastai's split index."""
    model = _load_arch(arch, pretrained)
    body = _body(model, cut)
    _adapt_input(body, n_in, pretrained)
    was = body.training
    body.eval()
    with torch.no_grad():
        shapes = [tuple(body(torch.zeros(2, n_in, size, size)).shape) for size in (64, 96)]
    body.train(was)
    if len(shapes[0]) != 4 or shapes[0][1] != shapes[1][1]:
        raise ValueError(
            f"the body of {getattr(arch, '__name__', arch)} gives {shapes[0]} for 64x64 images, not "
            "(batch, channels, height, width) with the channels second (channels-last features, as "
            "swin's, are not supported): pass cut= at the layer to end the body at"
        )
    return body, shapes[0][1], _split_index(arch, model, body)


def vision_learner(
    dls: DataLoaders,
    arch: str | Callable[..., nn.Module],
    metrics: Any = None,
    pretrained: bool = True,
    n_out: int | None = None,
    n_in: int | None = None,
    cut: int | None = None,
    splitter: Callable | None = None,
    custom_head: nn.Module | None = None,
    **kwargs: Any,
) -> Learner:
    """A Learner over a torchvision or timm architecture with a new head for `n_out` outputs, split as fastai does.

    `arch` is a torchvision model function (torchvision.models.resnet34), a timm model function
    (timm.models.resnet18) or a name: a name is timm's first (any name timm.list_models() knows, with a pretrained
    tag or not), else one of torchvision's classification models (torchvision.models.list_models()); looking a name
    up needs timm installed, so that a name means one model. A timm arch is built by timm.create_model(name,
    pretrained=, in_chans=, num_classes=0, **kwargs: other keywords go to timm), its feature map is the body and
    the head is fastai's, in two parameter groups, body and head. `n_in` defaults to the channels of the data.
    """
    if isinstance(arch, nn.Module) or not (callable(arch) or isinstance(arch, str)):
        raise TypeError(
            f"arch must be a torchvision model function such as torchvision.models.resnet34, a timm model name "
            f"such as 'resnet18' or a timm model function, got {arch!r}: not a model already built"
        )
    arch = resolve_arch(arch)  # a str is now a timm name
    head_kw = {k: kwargs.pop(k) for k in HEAD_ARGS if k in kwargs}
    taken = set(inspect.signature(Learner).parameters) - {"dls", "model", "metrics", "splitter"}
    timm_kw = {}
    for k in list(kwargs):
        if k in NOT_TAKEN:
            raise TypeError(f"vision_learner does not take {k}= (fastai's does): {NOT_TAKEN[k]}")
        if k not in taken:
            if isinstance(arch, str):
                timm_kw[k] = kwargs.pop(k)
                continue
            raise TypeError(
                f"vision_learner does not take {k}=: it takes {sorted(taken | set(HEAD_ARGS))} besides its own"
            )
    if isinstance(arch, str) and cut is not None:
        raise TypeError(
            f"vision_learner does not take cut= with timm's {arch}: its body is the model up to the pooling "
            "(forward_features); pass a custom_head= for another head, or a torchvision function to cut"
        )
    if n_out is None:
        n_out = dls.c
        if n_out is None:
            raise ValueError("could not infer the number of outputs from the data: pass n_out=")
    image = _first_image(dls)
    n_in = n_in or (int(image.shape[0]) if image is not None else 3)
    if isinstance(arch, str):
        size = tuple(image.shape[1:]) if image is not None and image.shape[0] == n_in else None
        body, nf = timm_body(arch, pretrained, n_in, size, **timm_kw)
        head_kw["pool"] = body.needs_pool  # as fastai: timm's pooled features (ViTs) get a head without pooling
        split_at = None
    else:
        body, nf, split_at = _torchvision_body(arch, pretrained, cut, n_in)
    net = nn.Sequential(body, custom_head if custom_head is not None else create_head(nf, n_out, **head_kw))

    def default_splitter(m: nn.Sequential) -> list[list[nn.Parameter]]:
        b, h = m[0], m[1]
        if split_at is not None:
            return [list(b[:split_at].parameters()), list(b[split_at:].parameters()), list(h.parameters())]
        return [list(b.parameters()), list(h.parameters())]

    # fastai's groups (torchvision resnets: early body, late body, head; timm: body, head), so that slice(a, b)
    # gives discriminative rates and freeze() trains the head
    learn = Learner(dls, net, metrics=metrics, splitter=splitter or default_splitter, **kwargs)
    if pretrained:
        learn.freeze()
    return learn


cnn_learner = vision_learner
