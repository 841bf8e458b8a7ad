"""The order of the training batches, as a state that a checkpoint can hold.

A run restarted from a checkpoint taken in the middle of an epoch must see the rest of that
epoch's batches, in the same order, and then the same later epochs as a run that was never
stopped. For that the order of an epoch is a function of (seed, epoch) alone, and the loader
counts the batches it has handed to the training loop. Its ``state_dict()`` goes into the
checkpoints (bnn_lab.training.safety.data_position) and Lightning calls ``set_epoch`` before each
epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled batches of indices, one pass per epoch, that can start in the middle of a pass.

    The permutation of epoch ``e`` is the one ``BatchSampler(RandomSampler(generator=
    torch.Generator().manual_seed(seed)))`` yields in its (e+1)-th full pass: RandomSampler
    draws two ``randperm`` per pass from its generator (the second, empty slice at the end of
    the pass), so epoch ``e`` uses draw 2e+1. Runs keep the batch order they had before this
    sampler existed, and the order no longer depends on how the previous epochs ended.

    ``position`` is the number of batches of ``epoch`` already handed out; ``__iter__`` starts
    there. It is advanced by :class:`ResumableDataLoader` as batches reach the training loop.
    A pass read to its end moves on to the next epoch by itself.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int) -> None:
        if num_samples <= 0 or batch_size <= 0:
            raise ValueError(f"need num_samples > 0 and batch_size > 0, got {num_samples} and {batch_size}")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, int(seed)
        self.epoch = 0
        self.position = 0
        self._generator: torch.Generator | None = None
        self._generator_epoch = 0  # the epoch whose permutation the generator draws next

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)  # the last batch may be short

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch: a new epoch starts at its first batch, the
        epoch already in progress (after a restart) keeps its position."""
        if epoch != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def permutation(self, epoch: int) -> torch.Tensor:
        if self._generator is None or self._generator_epoch > epoch:
            self._generator = torch.Generator().manual_seed(self.seed)
            self._generator_epoch = 0
        while self._generator_epoch <= epoch:
            perm = torch.randperm(self.num_samples, generator=self._generator)
            torch.randperm(self.num_samples, generator=self._generator)  # RandomSampler's end-of-pass draw
            self._generator_epoch += 1
        return perm

    def __iter__(self) -> Iterator[list[int]]:
        perm = self.permutation(self.epoch)
        for i in range(self.position, len(self)):
            yield perm[i * self.batch_size : (i + 1) * self.batch_size].tolist()
        # a pass read to its end moves on by itself: wrappers that do not forward set_epoch (the
        # DistributedSampler that Lightning puts around it under DDP) still get a new order per epoch
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "epoch": self.epoch,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = (state["seed"], state["num_samples"], state["batch_size"])
        if saved != (self.seed, self.num_samples, self.batch_size):
            raise ValueError(
                f"the checkpoint's batch order (seed, samples, batch size) = {saved} differs from "
                f"this run's {(self.seed, self.num_samples, self.batch_size)}"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class ResumableDataLoader(DataLoader):
    """A DataLoader whose ``sampler`` is an :class:`EpochBatchSampler` (with ``batch_size=None``);
    it counts the batches that reach the consumer, after any worker prefetching, so that the
    position saved in a checkpoint is the number of batches really trained on.

    Iteration starts at the first batch that is asked for, not at ``iter()``: Lightning creates
    the iterator before a restored checkpoint has set the position and the RNG states.

    Every pass draws the workers' base seed from the global torch RNG, as any DataLoader
    without a generator does, so runs keep the random stream they had before. A pass that
    starts in the middle of an epoch (after a restart) draws it from a private generator
    instead: the stopped run drew it when that epoch began, before its checkpoint's RNG state
    was taken, and a second draw would shift everything random that follows.

    With worker processes the sampler is read ahead of the batches in use; the loader keeps
    the epoch and position of the batch last handed out, as without workers.

    Lightning may rebuild the loader with another sampler (a DistributedSampler under DDP);
    the loader then has no state and iterates as a plain DataLoader.
    """

    def _epoch_sampler(self) -> EpochBatchSampler | None:
        return self.sampler if isinstance(self.sampler, EpochBatchSampler) else None

    def __iter__(self):
        sampler = self._epoch_sampler()
        if sampler is None:
            yield from super().__iter__()
            return
        private = sampler.position > 0 and self.generator is None
        if private:
            self.generator = torch.Generator()
        try:
            batches = super().__iter__()
        finally:
            if private:
                self.generator = None
        epoch, position = sampler.epoch, sampler.position
        for batch in batches:
            # counted here, as batches reach the consumer: loader workers read the sampler ahead,
            # to its end (where it moves on to the next epoch) before the last batches are used
            position += 1
            sampler.epoch, sampler.position = epoch, position
            yield batch
        sampler.epoch, sampler.position = epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        sampler = self._epoch_sampler()
        return sampler.state_dict() if sampler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sampler = self._epoch_sampler()
        if sampler is not None and state:
            sampler.load_state_dict(state)
