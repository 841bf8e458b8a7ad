"""The training batch order: a function of (seed, epoch), the order runs had before (PyTorch's
BatchSampler over a seeded RandomSampler), and resumable in the middle of an epoch."""

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from bnn_lab.data.sampler import EpochBatchSampler, ResumableDataLoader

N, BATCH, SEED = 103, 8, 42  # 13 batches, the last one of 7


class Indices(torch.utils.data.Dataset):
    """dataset[list of indices] -> the indices, to see exactly which samples a batch holds."""

    def __len__(self):
        return N

    def __getitem__(self, idx):
        return torch.as_tensor(idx)


def pytorch_epochs(epochs: int) -> list[list[list[int]]]:
    """What the previous loader yielded: the same BatchSampler iterated epoch after epoch."""
    sampler = BatchSampler(RandomSampler(range(N), generator=torch.Generator().manual_seed(SEED)), BATCH, False)
    return [list(sampler) for _ in range(epochs)]


def loader(sampler: EpochBatchSampler) -> ResumableDataLoader:
    return ResumableDataLoader(Indices(), sampler=sampler, batch_size=None)


def test_same_batches_as_a_seeded_random_sampler_epoch_after_epoch():
    sampler = EpochBatchSampler(N, BATCH, SEED)
    ours = []
    for epoch in range(3):
        sampler.set_epoch(epoch)  # what Lightning does before each epoch
        ours.append([b.tolist() for b in loader(sampler)])
    assert ours == pytorch_epochs(3)
    assert len(sampler) == 13 and [len(b) for b in ours[0]] == [8] * 12 + [7]
    assert sorted(i for b in ours[1] for i in b) == list(range(N))  # a permutation
    assert ours[0] != ours[1]


def test_an_epoch_order_does_not_depend_on_the_history():
    fresh = EpochBatchSampler(N, BATCH, SEED)
    fresh.set_epoch(2)
    assert list(fresh) == pytorch_epochs(3)[2]
    # a shortened epoch (limit_train_batches) does not shift the next ones
    used = EpochBatchSampler(N, BATCH, SEED)
    next(iter(loader(used)))
    used.set_epoch(1)
    assert list(used) == pytorch_epochs(2)[1]
    assert not torch.equal(EpochBatchSampler(N, BATCH, 7).permutation(0), fresh.permutation(0))


def test_stopped_mid_epoch_a_new_loader_continues_with_the_next_batch():
    whole = pytorch_epochs(2)
    first = EpochBatchSampler(N, BATCH, SEED)
    first.set_epoch(1)
    it = iter(loader(first))
    seen = [next(it).tolist() for _ in range(5)]
    state = loader(first).state_dict()
    assert state == {"seed": SEED, "num_samples": N, "batch_size": BATCH, "epoch": 1, "position": 5}

    restarted = EpochBatchSampler(N, BATCH, SEED)  # a new process: epoch 0, position 0
    dl = loader(restarted)
    dl.load_state_dict(state)
    restarted.set_epoch(1)  # Lightning sets the epoch in progress again: the position stays
    rest = [b.tolist() for b in dl]
    assert seen + rest == whole[1]
    restarted.set_epoch(2)
    assert [b.tolist() for b in dl] == pytorch_epochs(3)[2]


def test_a_pass_read_to_its_end_moves_to_the_next_epoch_by_itself():
    """Under DDP Lightning wraps the sampler and calls set_epoch on the wrapper only."""
    sampler = EpochBatchSampler(N, BATCH, SEED)
    assert [list(sampler), list(sampler)] == pytorch_epochs(2)


def test_a_checkpoint_of_another_batch_order_is_refused():
    sampler = EpochBatchSampler(N, BATCH, SEED)
    state = sampler.state_dict()
    with pytest.raises(ValueError, match="batch order"):
        EpochBatchSampler(N, 16, SEED).load_state_dict(state)
    with pytest.raises(ValueError, match="batch order"):
        EpochBatchSampler(N, BATCH, 1).load_state_dict(state)


def test_the_global_rng_is_drawn_as_before_except_by_a_pass_resumed_mid_epoch():
    """A DataLoader draws its workers' base seed from the global torch RNG at each pass; runs
    keep that random stream. A pass resumed mid-epoch must not draw: the stopped run drew when
    the epoch began, before its checkpoint's RNG state was taken."""
    previous = DataLoader(
        Indices(),
        batch_size=None,
        sampler=BatchSampler(RandomSampler(range(N), generator=torch.Generator().manual_seed(SEED)), BATCH, False),
    )
    torch.manual_seed(0)
    list(previous)
    after_previous = torch.get_rng_state()
    torch.manual_seed(0)
    list(loader(EpochBatchSampler(N, BATCH, SEED)))
    assert torch.equal(torch.get_rng_state(), after_previous)

    resumed = EpochBatchSampler(N, BATCH, SEED)
    resumed.load_state_dict({**resumed.state_dict(), "position": 5})
    torch.manual_seed(0)
    before = torch.get_rng_state()
    dl = loader(resumed)
    assert len(list(dl)) == 13 - 5
    assert torch.equal(torch.get_rng_state(), before) and dl.generator is None


def test_with_workers_the_position_is_that_of_the_batches_handed_out():
    """Workers read the sampler ahead, to its end; the state (and the next epoch) must still be
    that of the batches the consumer got, as without workers."""
    sampler = EpochBatchSampler(N, BATCH, SEED)
    with_workers = ResumableDataLoader(Indices(), sampler=sampler, batch_size=None, num_workers=2)
    it = iter(with_workers)
    first = [next(it).tolist() for _ in range(12)]  # the workers have already read the 13th
    assert with_workers.state_dict()["epoch"] == 0 and with_workers.state_dict()["position"] == 12
    last = next(it).tolist()
    assert next(it, None) is None
    assert first + [last] == pytorch_epochs(1)[0]
    assert (with_workers.state_dict()["epoch"], with_workers.state_dict()["position"]) == (1, 0)
    sampler.set_epoch(1)
    assert [b.tolist() for b in with_workers] == pytorch_epochs(2)[1]
