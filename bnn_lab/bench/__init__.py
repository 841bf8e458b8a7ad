"""Micro-benchmarks of the packed binary kernels against torch float kernels.

Entry point: :func:`bnn_lab.bench.cli.main` (console script ``bnn-lab-bench``, or
``python -m bnn_lab.bench``).
"""
