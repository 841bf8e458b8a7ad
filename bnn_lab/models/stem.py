"""Small-input stem: a 3x3 stride-1 first conv and no stem max-pool.

Patchify stems (kernel == stride, as in ViT or ConvNeXt) are left alone: set the patch size
through the model's own arguments instead.

ImageNet stems (7x7/2 conv + 3x3/2 max-pool) shrink 28x28 or 8x8 inputs to almost nothing.
The first conv is found through timm's ``pretrained_cfg['first_conv']`` (every timm model
has it), so this works for any timm CNN, not just the ones registered here.
"""

from __future__ import annotations

from torch import nn


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, leaf = name.split(".")
    parent = model
    for p in path:
        parent = getattr(parent, p)
    return parent, leaf


def first_conv_name(model: nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("first_conv")
    if isinstance(name, (list, tuple)):
        name = name[0]
    modules = dict(model.named_modules())
    if name and isinstance(modules.get(name), nn.Conv2d):
        return name
    return next((n for n, m in modules.items() if isinstance(m, nn.Conv2d)), None)


def shrink_stem(model: nn.Module) -> list[str]:
    """Make the stem keep the resolution; returns what it changed (empty if nothing)."""
    changed: list[str] = []
    name = first_conv_name(model)
    if name is None:
        return changed
    conv: nn.Conv2d = dict(model.named_modules())[name]
    if conv.kernel_size[0] == conv.stride[0] > 1:
        return changed  # a patchify stem (ViT, ConvNeXt): its stride is the patch size
    if conv.stride != (1, 1) or conv.kernel_size[0] > 3:
        parent, leaf = _parent(model, name)
        new = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
        setattr(parent, leaf, new)
        changed.append(f"{name}: {tuple(conv.kernel_size)}/{conv.stride[0]} -> (3, 3)/1")
    depth = name.count(".")
    order = [n for n, _ in model.named_modules()]
    after = order[order.index(name) + 1 :]
    for n in after:
        m = model.get_submodule(n)
        if isinstance(m, nn.Conv2d):
            break  # only a pool that comes before the next conv belongs to the stem
        if isinstance(m, nn.MaxPool2d) and n.count(".") <= depth:
            parent, leaf = _parent(model, n)
            setattr(parent, leaf, nn.Identity())
            changed.append(f"{n}: max-pool removed")
            break
    return changed
