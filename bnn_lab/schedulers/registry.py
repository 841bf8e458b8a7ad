"""Name -> LR schedule (the ``scheduler`` config group; conf/scheduler/<name>.yaml).

A schedule is called as ``schedule(total_steps, steps_per_epoch, **options)`` and returns
the LR factor of each step, ``factor(step) -> float``, or None for a constant LR.
"""

from __future__ import annotations

from ..registry import Registry

SCHEDULERS: Registry = Registry("scheduler")
register_scheduler = SCHEDULERS.register
scheduler_names = SCHEDULERS.names
