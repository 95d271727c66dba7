"""Parameter groups (layer groups, weight-decay exemptions, freezing) and the default optimizer, as fastai's."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .checks import is_int

# torch's private bases: it has no public class that every BatchNorm*d (or InstanceNorm*d) derives from
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)


def one_group(model: nn.Module) -> list[list[nn.Parameter]]:
    """The default splitter: every parameter in one layer group."""
    return [list(model.parameters())]


def norm_bias_params(model: nn.Module) -> list[nn.Parameter]:
    """fastai's norm_bias_params: every parameter of a norm layer, and every bias (kept out of weight decay)."""
    if isinstance(model, NORM_TYPES):
        return list(model.parameters())
    out = [p for c in model.children() for p in norm_bias_params(c)]
    bias = getattr(model, "bias", None)
    if isinstance(bias, nn.Parameter):
        out.append(bias)
    return out


def param_groups(model: nn.Module, layer_groups: Sequence[Sequence[nn.Parameter]], wd_bn_bias: bool) -> list[dict]:
    """Optimizer groups, per layer group: the decayed parameters, then (as fastai) the norm and bias ones at wd 0."""
    exempt = set() if wd_bn_bias else {id(p) for p in norm_bias_params(model)}
    groups = []
    for i, ps in enumerate(layer_groups):
        decay, rest = [p for p in ps if id(p) not in exempt], [p for p in ps if id(p) in exempt]
        if decay or not rest:
            groups.append({"params": decay, "layer_group": i})  # which layer group a slice gives it the lr of
        if rest:
            groups.append({"params": rest, "layer_group": i, "weight_decay": 0.0, "wd_exempt": True})
    return groups


def split(groups: Any) -> list[list[nn.Parameter]]:
    """A splitter's output as lists of parameters, refused with a clear message when it is not that."""
    how = (
        "the splitter must return a list of parameter lists, one per layer group, e.g. "
        "lambda m: [list(m[0].parameters()), list(m[1].parameters())]"
    )
    if isinstance(groups, (torch.Tensor, nn.Module)) or not isinstance(groups, Iterable):
        raise TypeError(f"{how}; got {type(groups).__name__}")
    out = []
    for g in groups:
        if isinstance(g, torch.Tensor) or not isinstance(g, Iterable):
            raise TypeError(f"{how}; got a list holding {type(g).__name__} (wrap it: [list_of_params])")
        g = list(g)
        bad = [type(p).__name__ for p in g if not isinstance(p, nn.Parameter)]
        if bad:
            raise TypeError(f"{how}; a group holds {bad[0]}, not nn.Parameter (use module.parameters())")
        out.append(g)
    if not any(out):
        raise ValueError(f"the splitter gave no parameters: {how}")
    return out


def default_opt_func(params: Any, device: torch.device | None = None) -> torch.optim.Optimizer:
    """fastai's default optimizer: AdamW, betas (0.9, 0.99), eps 1e-5, decoupled weight decay 0.01."""
    fused = device is not None and device.type == "cuda"
    return torch.optim.AdamW(
        params, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01, **({"fused": True} if fused else {})
    )


def layer_index(opt: torch.optim.Optimizer) -> list[int]:
    """The layer group of each optimizer parameter group (its own index where an opt_func made its own groups)."""
    idx = [g.get("layer_group", i) for i, g in enumerate(opt.param_groups)]
    return idx if all(isinstance(i, int) for i in idx) else list(range(len(idx)))


def by_layer_group(opt: torch.optim.Optimizer, key: str) -> list[list[Any]]:
    """`key` of each optimizer parameter group, gathered by layer group, in layer-group order."""
    out: dict[int, list[Any]] = {}
    for i, g in zip(layer_index(opt), opt.param_groups):
        out.setdefault(i, []).append(g[key])
    return [out[i] for i in sorted(out)]


def mom_key(opt: torch.optim.Optimizer) -> str | None:
    """The hyper-parameter the one-cycle momentum schedule drives: 'betas' (Adam's beta1), 'momentum', or None."""
    g = opt.param_groups[0]
    return "betas" if "betas" in g else "momentum" if "momentum" in g else None


def set_wd(opt: torch.optim.Optimizer, wd: float | None) -> None:
    """Set the weight decay, checked by the caller, of every group not exempt from it (None: leave it as it is)."""
    if wd is None:
        return
    for g in opt.param_groups:
        if not g.get("wd_exempt"):
            g["weight_decay"] = wd


def freeze_to(model: nn.Module, layers: list[list[nn.Parameter]], n: int, train_bn: bool) -> None:
    """Train only the layer groups from `n` on (fastai's freeze_to); with `train_bn`, norm layers still train."""
    if not is_int(n):
        raise TypeError(f"freeze_to takes the index of the first layer group to train, got {n!r}")
    if n >= len(layers):
        but = " but for its norm layers" if train_bn and has_norm_layers(model) else ""
        warnings.warn(
            f"freezing {n} layer groups of {len(layers)}: the whole model is frozen{but}; freeze_to(-1) trains the "
            "last group",
            UserWarning,
            stacklevel=3,  # the user's call of learn.freeze_to
        )
    frozen = layers[:n] if n >= 0 else layers[: len(layers) + n]
    frozen_ids = {id(p) for ps in frozen for p in ps}
    norm_ids = (
        {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters()} if train_bn else set()
    )
    for ps in layers:
        for p in ps:
            p.requires_grad_(id(p) not in frozen_ids or id(p) in norm_ids)


def has_norm_layers(model: nn.Module) -> bool:
    """True when the model holds a norm layer with parameters."""
    return any(isinstance(m, NORM_TYPES) and any(True for _ in m.parameters()) for m in model.modules())
