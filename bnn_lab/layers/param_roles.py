"""What a module declares about its own parameters to the optimizer.

Generic code (``bnn_lab.optim.groups``) asks every module that is a :class:`ParameterRoles`;
nothing is marked on the tensors themselves, so copies, pickles and compiled models keep it.
"""

from __future__ import annotations

from torch import nn


class ParameterRoles:
    """Mixin with the defaults: no latent binary weights, no learning-rate factor.

    - ``latent_parameters()``: the latent weights this module binarizes (their own parameter
      group: ``optimizer.latent_weight_decay``, the latent optimizer of ``optimizer.latent``);
    - ``lr_factors()``: ``{parameter: f}``, parameters that train at f times the run's learning
      rate (RBONN's recurrent step size).
    """

    def latent_parameters(self) -> list[nn.Parameter]:
        return []

    def lr_factors(self) -> dict[nn.Parameter, float]:
        return {}
