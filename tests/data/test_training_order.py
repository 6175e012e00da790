"""The training order: a new shuffle every epoch, one seed per item and epoch."""

from __future__ import annotations

from clipbert.data.training_order import SeededShuffleSampler, item_seed


def test_each_epoch_is_a_new_shuffle_with_new_item_seeds() -> None:
    sampler = SeededShuffleSampler(list(range(10)), seed=3)
    first = list(sampler)
    assert sorted(index for index, _ in first) == list(range(10))
    assert list(sampler) == first  # the same epoch again: the same order and seeds
    sampler.set_epoch(1)
    second = list(sampler)
    assert [i for i, _ in second] != [i for i, _ in first]
    assert dict(second) != dict(first)  # every item draws anew
    assert dict(first)[4] == item_seed(3, 0, 4) and dict(second)[4] == item_seed(3, 1, 4)


def test_item_seeds_differ_by_run_seed_epoch_and_index() -> None:
    seeds = {item_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}
    assert len(seeds) == 3 * 3 * 50
    assert all(0 <= seed < 2**63 for seed in seeds)
