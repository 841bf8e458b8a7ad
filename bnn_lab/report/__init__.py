"""``bnn-lab-report``: one table and a few plots from many runs (a multirun, a sweep, any
folder of run directories)."""

from .cli import Report, build_report, main
from .collect import Run, collect_runs

__all__ = ["Report", "Run", "build_report", "collect_runs", "main"]
