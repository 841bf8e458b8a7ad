"""Name -> optimizer factory (the ``optimizer`` config group; conf/optimizer/<name>.yaml).

A factory is called as ``factory(param_groups, **options)`` and returns a
``torch.optim.Optimizer``; the options are the YAML's keys less those ``build`` reads
(name, weight_decay, latent_weight_decay, clip_latent, latent).
"""

from __future__ import annotations

from ..registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
register_optimizer = OPTIMIZERS.register
optimizer_names = OPTIMIZERS.names
