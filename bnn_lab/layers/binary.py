"""Binary Conv2d / Linear: sign of weights and (unless weights-only) of inputs.

The latent real-valued weights are kept (the same Parameter the float layer had), and
binarized on the fly through the weight estimator (after the layer's weight normalization, if
any: ``bnn_lab/layers/weight_norm.py``); inputs go through the input estimator.
The float layer's zero padding is kept during training: the packed evaluation path corrects
the border exactly (see ``bnn_lab.kernels``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .param_roles import ParameterRoles
from .scaling import NoScale, Scale
from .weight_norm import WeightNorm


class BinaryMixin(ParameterRoles):
    """Shared state of binary layers: estimators for weights and inputs, output scale, and the
    normalization of the latent weights before their sign (None: none). Its latent weight is
    declared to the optimizer (:meth:`latent_parameters`) while its weights are binary."""

    weight_estimator: nn.Module
    input_estimator: nn.Module | None
    scale: Scale
    weight_norm: WeightNorm | None

    def _setup_binary(self, weight_estimator, input_estimator, scale, weight_norm=None) -> None:
        self.weight_estimator = weight_estimator
        self.input_estimator = input_estimator
        self.scale = scale if scale is not None else NoScale()
        self.weight_norm = weight_norm

    def latent_parameters(self) -> list[nn.Parameter]:
        return [self.weight] if self.binary_weights else []

    @property
    def binary_weights(self) -> bool:
        """False in the real-weight stages of multi-stage recipes (weight estimator Identity)."""
        return not isinstance(self.weight_estimator, nn.Identity)

    @property
    def binary_inputs(self) -> bool:
        """False for BWN layers (no input estimator) and soft (tanh) activations."""
        return self.input_estimator is not None and not isinstance(self.input_estimator, (nn.Identity, nn.Tanh))

    def normalized_weight(self) -> torch.Tensor:
        """The latent weight as the estimator sees it: N(W), or W without a weight normalization."""
        return self.weight if self.weight_norm is None else self.weight_norm(self.weight)

    def binary_weight(self) -> torch.Tensor:
        """estimator(N(W)) times the normalization's detached per-output-channel factor."""
        if self.scale.changes_latent and self.binary_weights:  # a scale that prepares what is binarized (rbonn)
            return self.weight_estimator(self.scale.latent_weight(self.weight))
        group = getattr(self, "_weight_group", None)  # binarized with the model's other layers (.weight_group)
        w = group.binarized(self) if group is not None else None
        w = self.weight_estimator(self.normalized_weight()) if w is None else w
        factor = None if self.weight_norm is None else self.weight_norm.packed_scale(self.weight)
        return w if factor is None else w * factor.view(-1, *([1] * (w.dim() - 1)))

    def binary_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.input_estimator(x) if self.input_estimator is not None else x

    def extra_repr(self) -> str:
        w = "1W" if self.binary_weights else "32W"
        a = "1A" if self.binary_inputs else ("tanhA" if isinstance(self.input_estimator, nn.Tanh) else "32A")
        return super().extra_repr() + f", binary={w}{a}"


class BinaryConv2d(BinaryMixin, nn.Conv2d):
    @classmethod
    def from_float(cls, conv: nn.Conv2d, weight_estimator, input_estimator=None, scale=None, weight_norm=None):
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device="meta",
        )
        new.weight, new.bias = conv.weight, conv.bias  # the trained Parameters are reused
        new.train(conv.training)
        new._setup_binary(weight_estimator, input_estimator, scale, weight_norm)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._conv_forward(self.binary_input(x), self.binary_weight(), None)
        out = self.scale(out, self.weight, x)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class BinaryLinear(BinaryMixin, nn.Linear):
    @classmethod
    def from_float(cls, linear: nn.Linear, weight_estimator, input_estimator=None, scale=None, weight_norm=None):
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        new.weight, new.bias = linear.weight, linear.bias
        new.train(linear.training)
        new._setup_binary(weight_estimator, input_estimator, scale, weight_norm)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(self.binary_input(x), self.binary_weight())
        out = self.scale(out, self.weight, x)
        return out if self.bias is None else out + self.bias
