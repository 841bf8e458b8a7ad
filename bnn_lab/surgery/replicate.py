"""Channel replication (``binarize.replicate`` = beta): RepConv and the RepTran rules of
"RepBNN: towards a precise Binary Neural Network with Enhanced Feature Map via Repeating"
(Shi et al. 2022), as one transform for any network of Conv2d, Linear and BatchNorm.

The feature maps between layers become beta times wider, every copy of a channel with its
own BatchNorm affine (and, with RSign, its own threshold), at no extra binary parameter and
no extra binary MAC:

- binary conv / FC (RepBconv), C_in -> C_out: becomes beta C_in -> C_out / beta (the same
  C_in C_out k^2 binary weights, the same MACs), and its output is repeated beta^2 times
  along channels, y -> [y, y, ..., y] (beta C_out channels);
- BatchNorm (RepBN) on C channels: on beta C channels, its statistics and affine tiled,
  so each copy trains its own scale and shift;
- the layer that reads the image (first conv) repeats its output beta times;
- full-precision layers that read the wide feature map (kept downsampling convs, grouped
  convs, the classifier) first average the beta copies, x -> mean_k x[k C : (k+1) C], then
  repeat their output beta times (the classifier does not): their parameters are
  unchanged;
- elementwise operations, pooling, additions of equal-width maps and concatenations work
  on the wide map as they are; per-channel activations added by the surgery afterwards take
  their width from the BatchNorm before them.

The copies differ after each BatchNorm, so the next binary layer sees beta different signs
of every channel (a multi-threshold binarization) where the original network saw one.
Binary layers start from a fresh initialization (their shape changes). Networks with other
channel-sized parameters (LayerNorm, GroupNorm, multi-channel PReLU) are refused.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

_OTHER_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


class Replicated(nn.Module):
    """``layer`` between a fold of the input's ``beta`` copies (their mean) and a repeat of its
    output (``repeat`` times along channels)."""

    def __init__(self, layer: nn.Module, beta: int, fold: bool, repeat: int) -> None:
        super().__init__()
        self.layer, self.beta, self.fold, self.repeat = layer, beta, fold, repeat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold:
            x = x.unflatten(1, (self.beta, -1)).mean(1)
        out = self.layer(x)
        if self.repeat > 1:
            out = out.repeat(1, self.repeat, *([1] * (out.dim() - 2)))
        return out

    def extra_repr(self) -> str:
        return f"beta={self.beta}, fold={self.fold}, repeat={self.repeat}"


def _rep_layer(layer: nn.Module, beta: int) -> nn.Module:
    """The binary layer's replacement: beta C_in inputs, C_out / beta outputs, fresh weights."""
    kw = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(
            beta * layer.in_channels,
            layer.out_channels // beta,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            1,
            layer.bias is not None,
            layer.padding_mode,
            **kw,
        )
    return nn.Linear(beta * layer.in_features, layer.out_features // beta, layer.bias is not None, **kw)


def _rep_norm(bn: nn.modules.batchnorm._BatchNorm, beta: int) -> nn.Module:
    new = type(bn)(
        beta * bn.num_features,
        bn.eps,
        bn.momentum,
        bn.affine,
        bn.track_running_stats,
        device=getattr(bn.weight, "device", None),
    )
    with torch.no_grad():
        for key in ("weight", "bias", "running_mean", "running_var"):
            src, dst = getattr(bn, key), getattr(new, key)
            if src is not None:
                dst.copy_(src.repeat(beta))
        if bn.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    new.train(bn.training)
    return new


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def replicate_channels(
    model: nn.Module,
    plan: dict[str, str | None],
    beta: int,
    image_layer: str | None,
    classifier: str | None,
) -> dict[str, str | None]:
    """Apply the rules above in place. ``plan`` maps each Conv2d/Linear to why it stays as it
    is (None: it becomes binary); returns the plan under the layers' new names."""
    if beta < 1:
        raise ConfigError(f"binarize.replicate must be a positive integer, got {beta}")
    for name, m in model.named_modules():
        if isinstance(m, _OTHER_NORMS) or (isinstance(m, nn.PReLU) and m.num_parameters > 1):
            raise ConfigError(
                f"binarize.replicate supports Conv2d, Linear and BatchNorm networks; "
                f"{name} is a {type(m).__name__} with per-channel parameters"
            )
    new_plan: dict[str, str | None] = {}
    for name, reason in plan.items():
        layer = model.get_submodule(name)
        binary = reason is None and not (isinstance(layer, nn.Conv2d) and layer.groups != 1)
        if name == image_layer:
            wrapped = Replicated(layer, beta, fold=False, repeat=beta)
        elif binary:
            out = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
            if out % beta:
                raise ConfigError(
                    f"binarize.replicate={beta}: {name} has {out} output channels, not a multiple of {beta}"
                )
            wrapped = Replicated(_rep_layer(layer, beta), beta, fold=False, repeat=beta * beta)
        else:
            wrapped = Replicated(layer, beta, fold=True, repeat=1 if name == classifier else beta)
        _set(model, name, wrapped)
        new_plan[f"{name}.layer"] = reason
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            _set(model, name, _rep_norm(m, beta))
    return new_plan
