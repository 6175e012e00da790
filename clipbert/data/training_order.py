"""The training order: this process's shard, shuffled afresh every epoch, and with each index
the seed of that item's random draws.

An item's draws (its clip starts, the questions it pads with, its negative captions, a
replacement for a broken video) come from a seed that is a pure function of (run seed, epoch,
index), not from a shared random stream. So a run resumed mid-epoch, or run with another
number of loader workers, sees exactly the samples an uninterrupted run sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


def item_seed(seed: int, epoch: int, *position: int) -> int:
    """A well-mixed 63-bit seed for one item of one epoch; ``position`` is its index (and
    whatever else tells two reads of it apart in an epoch)."""
    state = np.random.SeedSequence([seed, epoch, *position]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


class SeededShuffleSampler(DistributedSampler):
    """Yields ``(index, item_seed)`` pairs; the order is a new shuffle each epoch (Lightning
    calls ``set_epoch``), split across processes as ``DistributedSampler`` does.

    Being a ``DistributedSampler`` already, Lightning keeps it under DDP instead of swapping in
    its own. Outside a process group it is the whole dataset in one shard.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=True,
            seed=seed,
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        for index in super().__iter__():
            yield index, item_seed(self.seed, self.epoch, index)
