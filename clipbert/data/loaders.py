"""How a task's datasets become loaders: batch sizes, workers, and the training order.

Training reads seeded items in a shuffled, resumable order with unreadable videos replaced and
counted; evaluation reads every item once, in order, unpadded across processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from clipbert.data.datasets import ReplaceBroken
from clipbert.data.training_order import SeededShuffleSampler


def check_int(name: str, value: object, minimum: int) -> None:
    """A config value that must be an integer of at least ``minimum``, named in the error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"task.datamodule.{name} must be >= {minimum} (an integer), got {value!r}; "
            "fix it in the task config or on the command line"
        )


@dataclass(frozen=True)
class LoaderSettings:
    """``batch_size`` and ``eval_batch_size`` count videos (each brings its texts);
    ``prefetch_factor`` is the batches each worker keeps ready (PyTorch's default 2, only with
    workers); ``broken_retries`` the unreadable training items read in a row before the run
    stops."""

    batch_size: int
    eval_batch_size: int
    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: int | None = None
    broken_retries: int = 10

    def __post_init__(self) -> None:
        for name, minimum in (
            ("batch_size", 1),
            ("eval_batch_size", 1),
            ("num_workers", 0),
            ("broken_retries", 1),
        ):
            check_int(name, getattr(self, name), minimum)

    def _options(self, collate_fn: Callable) -> dict:
        workers = self.num_workers > 0
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": workers,
            "prefetch_factor": self.prefetch_factor if workers else None,
            "collate_fn": collate_fn,
        }

    def training_loader(self, dataset: Dataset, collate_fn: Callable) -> StatefulDataLoader:
        """Seeded items, an unreadable video replaced and counted (never fatal). torchdata's
        loader has a state (its position in the epoch) that Lightning checkpoints, so a run
        resumed mid-epoch continues at the next batch; its own generator keeps the process's
        random stream out of the loader's bookkeeping."""
        seed = torch.initial_seed()  # the run's seed (seed_everything), alike in every process
        return StatefulDataLoader(
            ReplaceBroken(dataset, self.broken_retries),
            batch_size=self.batch_size,
            sampler=SeededShuffleSampler(dataset, seed),
            generator=torch.Generator().manual_seed(seed),
            **self._options(collate_fn),
        )

    def batches_loader(
        self, dataset: Dataset, sampler: Sampler, collate_fn: Callable
    ) -> StatefulDataLoader:
        """A training loader whose sampler yields whole batches of keys and whose dataset reads
        them (several corpora mixed: :mod:`clipbert.data.corpus_mix`), resumable as
        ``training_loader``'s."""
        return StatefulDataLoader(
            dataset,
            batch_size=None,  # the sampler batches
            sampler=sampler,
            generator=torch.Generator().manual_seed(torch.initial_seed()),
            **self._options(collate_fn),
        )

    def evaluation_loader(
        self, dataset: Dataset, collate_fn: Callable, batch_size: int | None = None
    ) -> DataLoader:
        """Every item once: Lightning's default DistributedSampler pads the shards to equal
        length, and the repeated items would be counted twice. ``batch_size``: items per batch,
        ``eval_batch_size`` by default."""
        sampler = None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            sampler = ContiguousShard(dataset, dist.get_rank(), dist.get_world_size())
        return DataLoader(
            dataset,
            batch_size=batch_size or self.eval_batch_size,
            sampler=sampler,
            **self._options(collate_fn),
        )


class ContiguousShard(DistributedSampler):
    """One process's share of an evaluation split: a contiguous block of items, no padding.

    Blocks (rather than every world_size-th item) keep the split's order when the processes'
    predictions are put back together rank after rank, so ``predict.py`` on 8 devices writes
    the same files as on one. The last blocks may be one item shorter than the first. A
    ``DistributedSampler``, so that Lightning uses it as it is rather than splitting it again.
    """

    def __init__(self, dataset: Dataset, rank: int, world_size: int) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=False)
        base, extra = divmod(len(dataset), world_size)
        self.start = rank * base + min(rank, extra)
        self.stop = self.start + base + (rank < extra)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start
