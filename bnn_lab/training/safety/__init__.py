"""Nothing lost on a crash: the machinery that lets a run die at any moment and continue
bit-exactly.

- ``checkpoint_io``: checkpoint files written atomically (temporary file, fsync, rename).
- ``checkpoints``: ``last.ckpt`` (what a run resumes from) and the best one by ``val/acc``.
- ``rng`` and ``data_position``: the random states and the loader's place in its epoch,
  saved with every checkpoint so that a resumed run draws the same numbers and batches.
- ``preemption``: SIGTERM / SIGUSR1 from a cluster: save, then stop cleanly.
- ``run_dir`` and ``resume``: a run directory is never overwritten by another run, and
  ``resume=true`` continues the same network from a checked checkpoint.

See docs/reliability.md for what each guarantees and how it is tested.
"""
