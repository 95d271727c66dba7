"""timm architectures for vision_learner: which archs are timm's, and the body fastai's TimmBody makes of them.

timm is imported here, lazily, only when an arch asks for it: `import lrwidget` never imports timm.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..core.errors import add_note, weights_unavailable

PIP_HINT = "pip install timm (or pip install 'lrwidget[timm]')"


def import_timm() -> ModuleType | None:
    """timm, imported on first use; None when it is not installed."""
    try:
        import timm
    except ImportError:
        return None
    return timm


def is_timm_function(arch: Any) -> bool:
    """True for a model function of timm's, such as timm.models.resnet18."""
    return callable(arch) and (getattr(arch, "__module__", None) or "").startswith("timm.")


def _torchvision_names() -> list[str]:
    import torchvision.models

    return torchvision.models.list_models(module=torchvision.models)


def resolve_arch(arch: str | Callable[..., nn.Module]) -> str | Callable[..., nn.Module]:
    """A timm model name (str) for a timm name or function, torchvision's function for a torchvision arch.

    A string is timm's name first (as in fastai, pretrained tags such as "resnet18.a1_in1k" included); a name timm
    does not know but torchvision's classification models do ("vit_b_16") gives torchvision's function. Resolving
    a string needs timm, so that a name means the same model whatever else is installed.
    """
    if isinstance(arch, str):
        timm = import_timm()
        tv_names = _torchvision_names()
        if timm is None:
            tv = f", or pass the function torchvision.models.{arch} for torchvision's" if arch in tv_names else ""
            raise ImportError(
                f"vision_learner(dls, {arch!r}) looks the name up in timm, which is not installed: {PIP_HINT}{tv}"
            )
        if timm.is_model(arch):
            return arch
        if arch in tv_names:
            import torchvision.models

            return torchvision.models.get_model_builder(arch)
        close = sorted(set(difflib.get_close_matches(arch, timm.list_models() + tv_names, n=3)))
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ValueError(
            f"no model is named {arch!r}: neither timm nor torchvision knows it{hint}; "
            f"timm.list_models('*{arch[:4]}*') and torchvision.models.list_models() list the names"
        )
    if is_timm_function(arch):
        timm = import_timm()
        name = getattr(arch, "__name__", "")
        if timm is None or not timm.is_model(name):
            raise TypeError(f"{arch!r} is not one of timm's registered model functions: pass its name as a string")
        return name
    return arch


class TimmBody(nn.Module):
    """A timm model without its classifier as a body: its feature map (forward_features), else its pooled features."""

    def __init__(self, model: nn.Module, needs_pool: bool):
        super().__init__()
        self.model, self.needs_pool = model, needs_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x) if self.needs_pool else self.model(x)


def _create(timm: ModuleType, name: str, pretrained: bool, n_in: int, kwargs: dict[str, Any]) -> nn.Module:
    """timm.create_model without a classifier, its errors told in vision_learner's terms."""
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=n_in, **kwargs)
    except TypeError as e:
        bad = [k for k in kwargs if k in str(e)]
        if not bad:
            raise
        raise TypeError(
            f"vision_learner passes {bad[0]}= on to timm.create_model({name!r}), which does not take it ({e})"
        ) from e
    except Exception as e:
        if pretrained and weights_unavailable(e):
            add_note(
                e,
                f"lrwidget: could not load the pretrained weights of timm's {name}. Without internet access, pass "
                "pretrained=False to train from scratch, or put the weights in Hugging Face's cache (HF_HOME, "
                "~/.cache/huggingface by default)",
            )
        raise


def _drop_unused(model: nn.Module, unused: set[int]) -> None:
    """Put nn.Identity in place of each submodule whose parameters the forward never used (e.g. a head's norm)."""
    dropped: list[str] = []
    for name, module in list(model.named_modules()):
        if not name or any(name.startswith(d + ".") for d in dropped):
            continue
        params = list(module.parameters())
        if params and all(id(p) in unused for p in params):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, nn.Identity())
            dropped.append(name)


def _probe(model: nn.Module, name: str, cfg: dict, x: torch.Tensor) -> tuple[bool, torch.Tensor]:
    """Whether the body is the unpooled feature map (fastai's needs_pool, checked for channels first) and its output."""
    try:
        needs_pool = cfg.get("pool_size") is not None
        out = model.forward_features(x) if needs_pool else None
        needs_pool = needs_pool and out.ndim == 4 and out.shape[1] == model.num_features
        if not needs_pool:
            out = model(x)
    except Exception as e:
        raise ValueError(
            f"timm's {name} does not take {x.shape[2]}x{x.shape[3]} images with {x.shape[1]} channels "
            f"({type(e).__name__}: {e}): resize the images, or pass what timm.create_model({name!r}) takes for the "
            "size (e.g. img_size=)"
        ) from e
    if not needs_pool and out.ndim != 2:
        raise ValueError(f"timm's {name} gives features of shape {tuple(out.shape)}, not (batch, features) once pooled")
    return needs_pool, out


def timm_body(
    name: str, pretrained: bool, n_in: int, size: tuple[int, int] | None, **kwargs: Any
) -> tuple[TimmBody, int]:
    """fastai's create_timm_model body: `timm.create_model(name, num_classes=0, in_chans=n_in)`, and its features.

    Where timm pools (its config has a pool_size) and forward_features gives (batch, num_features, h, w), the body
    is that feature map, for lrwidget's head to pool (concat pooling); otherwise (ViTs' tokens, swin's channels-last
    maps) the body is the model's own pooled features and the head must not pool. Submodules that the body's
    forward does not use (mobilenetv3's conv_head, convnext's head norm) are dropped, so every parameter trains.
    """
    timm = import_timm()
    if timm is None:
        raise ImportError(f"timm's {name} needs timm, which is not installed: {PIP_HINT}")
    model = _create(timm, name, pretrained, n_in, kwargs)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    h, w = size or tuple(cfg.get("input_size", (3, 224, 224)))[1:]
    x = torch.zeros(1, n_in, h, w)
    was = model.training
    model.eval()
    with torch.enable_grad():  # the backward finds the unused parameters, also under a caller's torch.no_grad()
        needs_pool, out = _probe(model, name, cfg, x)
        out.float().sum().backward()
    unused = {id(p) for p in model.parameters() if p.requires_grad and p.grad is None}
    model.zero_grad(set_to_none=True)
    model.train(was)
    _drop_unused(model, unused)
    return TimmBody(model, needs_pool), int(out.shape[1])
