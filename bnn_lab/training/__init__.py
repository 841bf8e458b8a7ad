"""Training. Read in this order:

- ``run.py``: a run (data, then its stages: model, surgery, summary, fit, test, metrics.json);
- ``stages.py``: the stages of plain, distillation and progressive runs;
- ``module.py``: the LightningModule (loss terms, optimizers, metrics);
- ``callbacks.py``, ``loggers.py``, ``epoch_log.py``: what every run attaches;
- ``teacher_cache.py``: full-precision teachers trained once and reused;
- ``heap.py``: freed tensor memory kept for the next step;
- ``safety/``: nothing lost on a crash (atomic checkpoints, RNG and data position,
  preemption, run-directory guards, resume).
"""
