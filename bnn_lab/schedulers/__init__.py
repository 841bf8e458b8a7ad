"""Learning-rate schedules (the ``scheduler`` config group), one file each."""

from . import cosine, none  # noqa: F401  (registration)
from .cosine import warmup_cosine
from .registry import SCHEDULERS, register_scheduler, scheduler_names

__all__ = ["SCHEDULERS", "register_scheduler", "scheduler_names", "warmup_cosine"]
