"""Pre-training data: caption corpora of images and videos, each caption matched with its own
visual item or with another's (ITM) and masked (MLM), as the original's pre-training loaders.

A corpus is laid out as the original's: a folder of jsonl files (one row per caption, the
visual id under ``id_key``) and a store of its images or videos. COCO and Visual Genome
captions (``coco_id`` / ``vg_id``) are the original's; ``convert.py`` makes the same rows of
WebVid-, CC3M-, COCO- and Visual Genome-style releases.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from clipbert.data.annotations import CaptionExample, load_keyed_captions
from clipbert.data.batches import PretrainBatch
from clipbert.data.collate import TokenMasker, frames_and_texts
from clipbert.data.corpus_mix import CorpusMixSampler, MixedCorpora
from clipbert.data.datamodule import ClipBertDataModule
from clipbert.data.datasets import ReplaceBroken, group_by_video, read_group
from clipbert.data.readers import ImageReader, VideoClipReader
from clipbert.data.text import TextTokenizer

log = logging.getLogger(__name__)

VISUAL_FORMATS = ("image", "video")
MATCHED, MISMATCHED = 1, 0  # ITM labels, as the original's


@dataclass(frozen=True)
class Corpus:
    """One caption corpus (``task.datamodule.corpora.<name>``).

    ``ratio``: how often the corpus is drawn, relative to the others (the original draws each
    of its two uniformly), and how many times its size counts in an epoch. ``batch_size`` and
    ``max_texts_per_video``: None takes the original's rule, the datamodule's values for
    images and, for videos, one caption each and ``batch_size / frames per video`` videos, so
    that a batch holds about as many frames either way.
    """

    name: str
    txt_db: str
    vis_db: str
    splits: Mapping[str, str | Sequence[str]]
    vis_format: str = "image"
    id_key: str = "video_id"
    text_key: str = "caption"
    ratio: float = 1.0
    batch_size: int | None = None
    max_texts_per_video: int | None = None

    def __post_init__(self) -> None:
        where = f"task.datamodule.corpora.{self.name}"
        if self.vis_format not in VISUAL_FORMATS:
            raise ValueError(f"{where}.vis_format must be one of {VISUAL_FORMATS}")
        if not self.ratio > 0:
            raise ValueError(f"{where}.ratio must be > 0, got {self.ratio}")
        if "train" not in self.splits:
            raise ValueError(f"{where}.splits needs a train file")

    def paths(self, split: str) -> list[Path]:
        files = self.splits[split]
        return [Path(self.txt_db) / f for f in ([files] if isinstance(files, str) else files)]


class CaptionGroups(Dataset):
    """One item per image (or video) chunk: up to ``max_texts_per_video`` of its captions
    (training fills a short chunk up by drawing its own captions again).

    Each caption is kept (ITM label 1) or, with probability ``itm_neg_prob``, replaced by a
    uniformly drawn caption of another image of the corpus (label 0), drawn afresh each read
    as the original. Evaluation draws from a seed per item, so every validation sees the same
    pairs and masks, and marks an unreadable video instead of replacing it.
    """

    def __init__(
        self,
        examples: Sequence[CaptionExample],
        read: VideoClipReader | ImageReader,
        corpus: str,
        max_texts_per_video: int,
        itm_neg_prob: float,
        evaluation: bool = False,
    ) -> None:
        if not 0.0 <= itm_neg_prob < 1.0:
            raise ValueError(f"itm_neg_prob must be in [0, 1), got {itm_neg_prob}")
        self.groups = group_by_video(examples, max_texts_per_video)
        if itm_neg_prob > 0 and len({g[0].store_key for g in self.groups}) < 2:
            raise ValueError(f"corpus '{corpus}': negative captions need at least two images")
        self.read = read
        self.corpus = corpus
        self.max_texts_per_video = max_texts_per_video
        self.itm_neg_prob = itm_neg_prob
        self.evaluation = evaluation

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict:
        if not self.evaluation:
            return self._item(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(index)
            return {**self._item(index), "seed": index}

    def _item(self, index: int) -> dict:
        frames, broken, _, group = read_group(
            self.read, self.groups[index], self.max_texts_per_video, self.evaluation
        )
        video_id = group[0].store_key
        texts, labels = [], []
        for example in group:
            if torch.rand(()).item() < self.itm_neg_prob:
                texts.append(self._negative(video_id))
                labels.append(MISMATCHED)
            else:
                texts.append(example.caption)
                labels.append(MATCHED)
        return {
            "frames": frames,
            "video_id": video_id,
            "texts": texts,
            "itm_labels": labels,
            "broken": [broken] * len(texts),
            "corpus": self.corpus,
        }

    def _negative(self, video_id: str) -> str:
        while True:
            other = self.groups[int(torch.randint(len(self.groups), ()).item())]
            if other[0].store_key != video_id:
                return other[int(torch.randint(len(other), ()).item())].caption


class PretrainCollator:
    """Tokenizes a batch's captions and masks them for MLM (:class:`TokenMasker`), negatives
    included as in the original. The masks are drawn from the batch's first item's seed, so a
    batch is the same however many loader workers read it."""

    def __init__(self, tokenize: TextTokenizer, mlm_probability: float) -> None:
        self.tokenize = tokenize
        self.masker = TokenMasker(tokenize.tokenizer, mlm_probability)

    def __call__(self, items: list[dict]) -> PretrainBatch:
        common = frames_and_texts(items, self.tokenize)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(items[0]["seed"])
            input_ids, mlm_labels = self.masker(common.pop("input_ids"))
        return PretrainBatch(
            **common,
            input_ids=input_ids,
            mlm_labels=mlm_labels,
            itm_labels=torch.tensor([label for item in items for label in item["itm_labels"]]),
            corpus=items[0]["corpus"],
            broken=[reason for item in items for reason in item["broken"]],
        )


class PretrainDataModule(ClipBertDataModule):
    """Caption corpora for MLM + ITM pre-training: training mixes them as the original's
    ``MetaLoader`` does (:class:`CorpusMixSampler`); validation reads each corpus's ``val``
    file, one loader per corpus.

    ``corpora`` maps each corpus's name to its :class:`Corpus` fields. ``max_texts_per_video``
    is the original's ``max_n_example_per_group`` (2 captions per image),
    ``itm_neg_prob`` the chance that a caption is swapped for another image's (0.5),
    ``mlm_probability`` the chance that a token is masked (0.15); ``data_ratio`` < 1 trains on
    that share of every corpus's captions. Video corpora sample clips with ``train_sampling``
    and ``eval_sampling``.
    """

    def __init__(
        self,
        *,
        corpora: Mapping[str, Mapping[str, Any]],
        max_texts_per_video: int = 2,
        itm_neg_prob: float = 0.5,
        mlm_probability: float = 0.15,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if not corpora:
            raise ValueError("task.datamodule.corpora is empty: name at least one caption corpus")
        self.corpora = [self._corpus(name, values) for name, values in corpora.items()]
        self.max_texts_per_video = max_texts_per_video
        self.itm_neg_prob = itm_neg_prob
        self.mlm_probability = mlm_probability
        self.val_datasets: list[CaptionGroups] = []

    @staticmethod
    def _corpus(name: str, values: Mapping[str, Any]) -> Corpus:
        try:
            return Corpus(name=name, **values)
        except TypeError as err:  # an unknown or missing key
            raise ValueError(
                f"task.datamodule.corpora.{name}: {err}; fix it in the task config"
            ) from None

    def _frames_per_item(self, corpus: Corpus, split: str) -> int:
        if corpus.vis_format == "image":
            return 1
        sampling = self.train_sampling if split == "train" else self.eval_sampling
        return sampling.n_clips * sampling.num_frames

    def corpus_batch_size(self, corpus: Corpus, split: str) -> int:
        """Images or videos per batch of one corpus (see :class:`Corpus`)."""
        if corpus.batch_size is not None:
            return corpus.batch_size
        size = self.loaders.batch_size if split == "train" else self.loaders.eval_batch_size
        return max(1, size // self._frames_per_item(corpus, split))

    def _reader(self, corpus: Corpus, split: str) -> VideoClipReader | ImageReader:
        if corpus.vis_format == "image":
            return ImageReader(self.open_store(corpus.vis_db))
        return self.video_reader(corpus.vis_db, split)

    def _groups(self, corpus: Corpus, split: str) -> CaptionGroups:
        paths = corpus.paths(split)
        examples = [
            e for path in paths for e in load_keyed_captions(path, corpus.id_key, corpus.text_key)
        ]
        if split == "train":
            examples = self.training_share(examples)
        per_video = corpus.max_texts_per_video or (
            self.max_texts_per_video if corpus.vis_format == "image" else 1
        )
        reader = self._reader(corpus, split)
        self.report_missing(f"{corpus.name} {split}", [e.video_id for e in examples], reader.store)
        groups = CaptionGroups(
            examples,
            reader,
            corpus.name,
            per_video,
            self.itm_neg_prob,
            evaluation=split != "train",
        )
        log.info(
            "%s %s split: %d captions of %d %ss in %d groups from %s",
            corpus.name,
            split,
            len(examples),
            len({e.video_id for e in examples}),
            corpus.vis_format,
            len(groups),
            ", ".join(map(str, paths)),
        )
        return groups

    def setup(self, stage: str) -> None:
        if stage not in ("fit", "validate"):
            raise ValueError(
                f"pre-training has training and validation captions only, nothing to {stage}: "
                "finetune a task from the run first (model.init_from=<its checkpoint>)"
            )
        if stage == "fit" and "train" not in self.datasets:
            self.datasets["train"] = MixedCorpora(
                [
                    ReplaceBroken(self._groups(corpus, "train"), self.loaders.broken_retries)
                    for corpus in self.corpora
                ]
            )
        if not self.val_datasets:
            self.val_datasets = [self._groups(c, "val") for c in self.corpora if "val" in c.splits]

    def collate_fn(self, split: str) -> PretrainCollator:
        return PretrainCollator(self.text_tokenizer, self.mlm_probability)

    def train_dataloader(self) -> StatefulDataLoader:
        mixed = self._dataset("train")
        trainer = getattr(self, "trainer", None)
        sampler = CorpusMixSampler(
            sizes=[len(corpus) for corpus in mixed.corpora],
            batch_sizes=[self.corpus_batch_size(c, "train") for c in self.corpora],
            ratios=[c.ratio for c in self.corpora],
            accumulate=trainer.accumulate_grad_batches if trainer is not None else 1,
            seed=torch.initial_seed(),
        )
        return self.loaders.batches_loader(mixed, sampler, self.collate_fn("train"))

    def val_dataloader(self) -> list[DataLoader]:
        return [
            self.loaders.evaluation_loader(
                dataset,
                self.collate_fn("val"),
                self.corpus_batch_size(corpus, "val"),
            )
            for corpus, dataset in zip(
                [c for c in self.corpora if "val" in c.splits], self.val_datasets, strict=True
            )
        ]
