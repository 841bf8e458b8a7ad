"""``bnn-lab-report``: one table and a few plots from many runs (a multirun, a sweep, any
folder of run directories)."""
from .collect import Run, collect_runs
from .cli import Report, build_report, main

__all__ = ["Report", "Run", "build_report", "collect_runs", "main"]
