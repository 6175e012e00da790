"""Several training corpora in one loader, mixed as the original's ``MetaLoader`` mixes them:
before every accumulation cycle one corpus is drawn (with probability proportional to its
``ratio``) and the cycle's batches all come from it, so a batch never mixes images and videos.

The draws are a pure function of (run seed, epoch, position), like the single-corpus training
order (:mod:`clipbert.data.training_order`): every process draws the same corpus without
talking to the others, and a run resumed mid-epoch sees the batches an uninterrupted one sees.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from clipbert.data.training_order import item_seed

BatchKeys = list[tuple[int, int, int]]
"""One batch: (corpus, index in the corpus, item seed) per item."""


class MixedCorpora(Dataset):
    """Reads a whole batch of :data:`BatchKeys` from its corpora's datasets (each indexed by
    ``(index, seed)``, :class:`~clipbert.data.datasets.ReplaceBroken`), so a loader without
    automatic batching hands :class:`CorpusMixSampler`'s batches to the collate function."""

    def __init__(self, corpora: Sequence[Dataset]) -> None:
        self.corpora = list(corpora)

    def __len__(self) -> int:
        return sum(len(corpus) for corpus in self.corpora)

    def __getitem__(self, keys: BatchKeys) -> list[dict]:
        return [self.corpora[corpus][index, seed] for corpus, index, seed in keys]


class CorpusMixSampler(DistributedSampler):
    """Batches of :data:`BatchKeys`, this process's share of an epoch (the process group's
    size and rank unless ``num_replicas`` and ``rank`` say otherwise).

    An epoch has as many batches as the original counts: the sum over corpora of
    ``size x ratio / batch size``, split across processes. Each corpus is read as a stream of
    shuffled passes (a new shuffle per pass and epoch; each process takes every
    ``world_size``-th item of a pass); a small corpus drawn often is read several times in one
    epoch, as the original's endless per-corpus loaders do. A ``DistributedSampler``, so
    Lightning keeps it under DDP.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_sizes: Sequence[int],
        ratios: Sequence[float],
        accumulate: int,
        seed: int,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if not len(sizes) == len(batch_sizes) == len(ratios) > 0:
            raise ValueError("give a size, a batch size and a ratio for every corpus")
        if min(sizes) < 1 or min(batch_sizes) < 1 or min(ratios) <= 0 or accumulate < 1:
            raise ValueError(
                f"corpora need items, batch sizes >= 1 and ratios > 0; got sizes {list(sizes)}, "
                f"batch sizes {list(batch_sizes)}, ratios {list(ratios)}"
            )
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        super().__init__(
            range(sum(sizes)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed
        )
        self.sizes = list(sizes)
        self.batch_sizes = list(batch_sizes)
        weights = np.asarray(ratios, dtype=float)
        self.probabilities = weights / weights.sum()
        self.accumulate = accumulate
        batches = sum(n * r / b for n, r, b in zip(sizes, ratios, batch_sizes, strict=True))
        self.batches_per_process = max(1, int(np.ceil(batches / self.num_replicas)))

    def __len__(self) -> int:
        return self.batches_per_process

    def corpus_order(self) -> list[int]:
        """The corpus of each of this epoch's batches (the same in every process)."""
        rng = np.random.default_rng([self.seed, self.epoch, 0])
        cycles = -(-self.batches_per_process // self.accumulate)
        drawn = rng.choice(len(self.sizes), size=cycles, p=self.probabilities)
        return np.repeat(drawn, self.accumulate)[: self.batches_per_process].tolist()

    def _stream(self, corpus: int) -> Iterator[tuple[int, int]]:
        """(pass, index) of this process's items of one corpus, pass after pass."""
        size = self.sizes[corpus]
        share = -(-size // self.num_replicas)
        for epoch_pass in range(2**62):
            order = np.random.default_rng([self.seed, self.epoch, corpus + 1, epoch_pass])
            padded = np.resize(order.permutation(size), share * self.num_replicas)
            for index in padded[self.rank :: self.num_replicas].tolist():
                yield epoch_pass, index

    def __iter__(self) -> Iterator[BatchKeys]:  # type: ignore[override]
        streams = [self._stream(corpus) for corpus in range(len(self.sizes))]
        for corpus in self.corpus_order():
            batch = []
            for _ in range(self.batch_sizes[corpus]):
                epoch_pass, index = next(streams[corpus])
                seed = item_seed(self.seed, self.epoch, corpus, epoch_pass, index)
                batch.append((corpus, index, seed))
            yield batch
