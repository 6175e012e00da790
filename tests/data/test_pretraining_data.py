"""Pre-training data: MLM masking and ITM negatives at the original's rates, and corpora mixed
as its MetaLoader mixes them, per accumulation cycle and alike in every process."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipbert.data.annotations import CaptionExample
from clipbert.data.collate import TokenMasker
from clipbert.data.corpus_mix import CorpusMixSampler
from clipbert.data.pretraining import CaptionGroups, PretrainCollator, PretrainDataModule
from clipbert.data.readers import ImageReader
from clipbert.data.store_access import open_store
from clipbert.data.text import TextTokenizer, load_tokenizer
from clipbert.demo.generate import write_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer(folder)
    return load_tokenizer(folder)


def test_masking_rates_and_the_tokens_it_never_touches(tokenizer) -> None:
    torch.manual_seed(0)
    words = torch.randint(len(tokenizer.all_special_ids), len(tokenizer), (4000, 14))
    ids = torch.cat([torch.full((4000, 1), tokenizer.cls_token_id), words], dim=1)
    ids[:, 10] = tokenizer.sep_token_id
    ids[:, 11:] = tokenizer.pad_token_id
    masked, labels = TokenMasker(tokenizer, 0.15)(ids)
    chosen = labels != -100
    assert chosen[:, 1:10].float().mean().item() == pytest.approx(0.15, abs=0.01)
    assert not chosen[:, [0, *range(10, 15)]].any()  # [CLS], [SEP] and padding
    assert torch.equal(labels[chosen], ids[chosen])
    became = masked[chosen]
    kept = became == ids[chosen]
    as_mask = became == tokenizer.mask_token_id
    assert as_mask.float().mean().item() == pytest.approx(0.8, abs=0.02)
    # 10% random ids (a random id equal to the word itself counts as kept) and 10% kept
    assert kept.float().mean().item() == pytest.approx(0.1 + 0.1 / len(tokenizer), abs=0.02)
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes


def _images(folder: Path, n: int) -> ImageReader:
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (40, 30), (10 * i, 0, 0)).save(folder / f"img{i}.png")
    return ImageReader(open_store(folder))


def _captions(n_images: int, per_image: int) -> list[CaptionExample]:
    return [
        CaptionExample(caption_id=f"{i}-{j}", video_id=f"img{i}", caption=f"picture {i} text {j}")
        for i in range(n_images)
        for j in range(per_image)
    ]


def test_negatives_are_drawn_at_itm_neg_prob_from_other_images(tmp_path: Path) -> None:
    examples = _captions(6, 3)
    groups = CaptionGroups(examples, _images(tmp_path / "img", 6), "coco", 2, itm_neg_prob=0.5)
    own = {e.caption: e.video_id for e in examples}
    labels = Counter()
    torch.manual_seed(0)
    for _ in range(300):
        for index in range(len(groups)):
            item = groups[index]
            for text, label in zip(item["texts"], item["itm_labels"], strict=True):
                labels[label] += 1
                assert (own[text] == item["video_id"]) == (label == 1)
    assert labels[0] / (labels[0] + labels[1]) == pytest.approx(0.5, abs=0.02)
    assert len(groups) == 6 * 2  # 3 captions per image in chunks of 2
    assert all(len(groups[i]["texts"]) == 2 for i in range(len(groups)))  # short ones filled


def test_evaluation_draws_the_same_pairs_and_masks_every_time(tmp_path: Path, tokenizer) -> None:
    groups = CaptionGroups(
        _captions(4, 2), _images(tmp_path / "img", 4), "coco", 2, 0.5, evaluation=True
    )
    collate = PretrainCollator(TextTokenizer(tokenizer, 12), 0.3)
    first = collate([groups[i] for i in range(4)])
    torch.manual_seed(123)  # the process's stream does not matter
    again = collate([groups[i] for i in range(4)])
    assert torch.equal(first.input_ids, again.input_ids)
    assert torch.equal(first.itm_labels, again.itm_labels)
    assert torch.equal(first.mlm_labels, again.mlm_labels)
    assert first.visual_index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_one_image_cannot_give_negatives(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least two images"):
        CaptionGroups(_captions(1, 3), _images(tmp_path / "img", 1), "coco", 2, 0.5)


def _mix(**kwargs) -> CorpusMixSampler:
    settings = {
        "sizes": [40, 10],
        "batch_sizes": [4, 2],
        "ratios": [1.0, 1.0],
        "accumulate": 2,
        "seed": 7,
        **kwargs,
    }
    return CorpusMixSampler(**settings)


def test_one_corpus_per_accumulation_cycle_drawn_by_ratio() -> None:
    sampler = _mix(ratios=[3.0, 1.0], accumulate=3)
    drawn = Counter()
    for epoch in range(40):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == int(np.ceil(40 * 3 / 4 + 10 / 2))
        corpora = [batch[0][0] for batch in batches]
        for start in range(0, len(corpora), 3):
            assert len(set(corpora[start : start + 3])) == 1  # a cycle reads one corpus
        for batch in batches:
            assert len({corpus for corpus, _, _ in batch}) == 1
            assert len(batch) == sampler.batch_sizes[batch[0][0]]
        drawn.update(corpora)
    assert drawn[0] / sum(drawn.values()) == pytest.approx(0.75, abs=0.05)


def test_an_epoch_is_a_function_of_seed_and_epoch() -> None:
    sampler = _mix()
    sampler.set_epoch(3)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(4)
    assert list(sampler) != first
    assert list(_mix(seed=8)) != list(_mix())


def test_processes_draw_the_same_corpora_and_disjoint_items() -> None:
    ranks = [_mix(sizes=[40, 12], num_replicas=2, rank=r) for r in (0, 1)]
    batches = [list(sampler) for sampler in ranks]
    assert [b[0][0] for b in batches[0]] == [b[0][0] for b in batches[1]]
    # the first pass over each corpus: halves that do not overlap
    for corpus, size in ((0, 40), (1, 12)):
        seen = [
            [index for batch in rank for c, index, _ in batch if c == corpus][: size // 2]
            for rank in batches
        ]
        if len(seen[0]) == size // 2:
            assert not set(seen[0]) & set(seen[1])
            assert len(set(seen[0]) | set(seen[1])) == size
    # the seeds of items differ across processes and passes
    seeds = [seed for rank in batches for batch in rank for _, _, seed in batch]
    assert len(set(seeds)) == len(seeds)


def _pretrain_datamodule(**values):
    corpus = {"txt_db": "t", "vis_db": "v", "splits": {"train": "a.jsonl"}, "id_key": "coco_id"}
    settings = {
        "corpora": {"coco_cap": corpus},
        "tokenizer_dir": "tok",
        "image_size": 64,
        "max_txt_len": 12,
        "batch_size": 2,
        "eval_batch_size": 2,
        **values,
    }
    return PretrainDataModule(**settings)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"corpora": {}}, "task.datamodule.corpora is empty"),
        (
            {"corpora": {"coco_cap": {"txt_db": "t", "vis_db": "v", "splits": {}, "idkey": "x"}}},
            "task.datamodule.corpora.coco_cap: .*idkey",
        ),
        (
            {"corpora": {"vg": {"txt_db": "t", "vis_db": "v", "splits": {"val": "b.jsonl"}}}},
            "task.datamodule.corpora.vg.splits needs a train file",
        ),
        (
            {
                "corpora": {
                    "c": {
                        "txt_db": "t",
                        "vis_db": "v",
                        "splits": {"train": "a"},
                        "vis_format": "gif",
                    }
                }
            },
            r"task.datamodule.corpora.c.vis_format must be one of \('image', 'video'\)",
        ),
        (
            {
                "corpora": {
                    "c": {"txt_db": "t", "vis_db": "v", "splits": {"train": "a"}, "ratio": 0}
                }
            },
            "task.datamodule.corpora.c.ratio must be > 0",
        ),
        ({"data_ratio": 1.5}, "task.datamodule.data_ratio must be in"),
    ],
)
def test_bad_pretraining_settings_are_named(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _pretrain_datamodule(**values)


def test_bad_rates_are_refused(tmp_path: Path, tokenizer) -> None:
    reader = _images(tmp_path / "img", 2)
    with pytest.raises(ValueError, match="itm_neg_prob must be in"):
        CaptionGroups(_captions(2, 1), reader, "coco", 2, itm_neg_prob=1.0)
    with pytest.raises(ValueError, match="mlm_probability must be in"):
        TokenMasker(tokenizer, 0.0)
