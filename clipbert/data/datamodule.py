"""LightningDataModules over the original's txt_db / vis_db layout: video QA (open-ended and
multiple choice) and text-video retrieval share stores, sampling, tokenizer and loaders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import BertTokenizerFast

from clipbert.data.annotations import (
    ImageQAExample,
    VideoQAExample,
    answers_by_label,
    load_ans2label,
    load_captions,
    load_image_qa,
    load_video_mc,
    load_video_qa,
)
from clipbert.data.batches import FramesBatch
from clipbert.data.collate import PairCollator, QACollator, collate_videos
from clipbert.data.datasets import (
    ImageTextMatchingDataset,
    QADataset,
    VideoListDataset,
)
from clipbert.data.decoding import build_decoder
from clipbert.data.frame_sampling import FrameSampling
from clipbert.data.loaders import LoaderSettings, check_int
from clipbert.data.object_storage import RemoteSettings
from clipbert.data.readers import ImageReader, VideoClipReader
from clipbert.data.store_access import open_store
from clipbert.data.stores import VisualStore
from clipbert.data.text import TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


def frame_sampling(name: str, values: Mapping[str, Any] | None) -> FrameSampling:
    """``task.datamodule.<name>`` as a :class:`FrameSampling`, its errors naming the key."""
    try:
        return FrameSampling(**(values or {}))
    except (TypeError, ValueError) as err:  # TypeError: an unknown key
        raise ValueError(
            f"task.datamodule.{name}: {err}; fix it in the task config or on the command line"
        ) from None


class ClipBertDataModule(pl.LightningDataModule):
    """What every task's data shares: sparse sampling, decoders, the tokenizer and the loaders.
    Subclasses say where the annotations and videos are and build one dataset per split.

    The keyword arguments are the flat ``task.datamodule`` keys users type and recorded runs
    hold; the loaders' own are kept together in :class:`LoaderSettings`. ``image_size`` is the
    frames' size for the model: loaders ship uint8 frames at their own size, and the model's
    input transform resizes them (the run layer hands it this value). ``data_ratio`` < 1
    trains on that share of the training examples (the original's option of that name), the
    same share for every seed (:meth:`training_share`), so runs that compare recipes on a small
    labelled share see the same examples.
    """

    def __init__(
        self,
        *,
        tokenizer_dir: str,
        image_size: int,
        max_txt_len: int,
        batch_size: int,
        eval_batch_size: int,
        train_sampling: Mapping[str, Any] | None = None,
        eval_sampling: Mapping[str, Any] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        decoder: str = "auto",
        decoder_fallback: str | None = "pyav",
        decode_timeout: float | None = 60.0,
        broken_retries: int = 10,
        predict_split: str = "test",
        prepare: Callable[[], Any] | None = None,
        data_ratio: float = 1.0,
        storage: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < data_ratio <= 1.0:
            raise ValueError(f"task.datamodule.data_ratio must be in (0, 1], got {data_ratio}")
        self.loaders = LoaderSettings(
            batch_size, eval_batch_size, num_workers, pin_memory, prefetch_factor, broken_retries
        )
        check_int("image_size", image_size, 32)  # one res5 cell
        check_int("max_txt_len", max_txt_len, 1)
        self.tokenizer_dir = Path(tokenizer_dir)
        self.image_size = image_size
        self.max_txt_len = max_txt_len
        self.train_sampling = frame_sampling("train_sampling", train_sampling)
        self.eval_sampling = frame_sampling("eval_sampling", eval_sampling)
        # an unknown name or a bad time limit fails here, not in a worker
        build_decoder(decoder, decoder_fallback, decode_timeout)
        self.decoder_name = decoder
        self.decoder_fallback = decoder_fallback
        self.decode_timeout = decode_timeout
        self.predict_split = predict_split
        self._prepare = prepare
        self.data_ratio = data_ratio
        self.storage = RemoteSettings.from_config(storage, "task.datamodule.storage")
        self.datasets: dict[str, Dataset] = {}

    def prepare_data(self) -> None:
        """Run the task's preparation hook (the demo generates its data here)."""
        if self._prepare is not None:
            self._prepare()

    @property
    def answer_vocabulary(self) -> list[str] | None:
        """Answers indexed by label, for tasks that classify over a vocabulary."""
        return None

    @cached_property
    def tokenizer(self) -> BertTokenizerFast:
        return load_tokenizer(self.tokenizer_dir)

    @property
    def text_tokenizer(self) -> TextTokenizer:
        return TextTokenizer(self.tokenizer, self.max_txt_len)

    def training_share(self, examples: list) -> list:
        """``data_ratio`` of the training examples, at least one: the first of a shuffle with a
        fixed seed, in their file order."""
        if self.data_ratio == 1.0:
            return examples
        keep = max(1, round(self.data_ratio * len(examples)))
        chosen = np.random.default_rng(0).permutation(len(examples))[:keep]
        log.info(
            "training on %d of %d examples (data_ratio %g)", keep, len(examples), self.data_ratio
        )
        return [examples[i] for i in sorted(chosen)]

    def report_missing(self, split: str, video_ids: list[str], store: VisualStore) -> None:
        """Say before any decoding how many of a split's videos the store lacks. All of them
        means a wrong vis_db (an error); a few are replaced in training and counted wrong in
        evaluation, like undecodable ones."""
        ids = list(dict.fromkeys(video_ids))
        missing = [video_id for video_id in ids if video_id not in store]
        if missing and len(missing) == len(ids):
            raise ValueError(
                f"none of the {len(ids)} videos of the {split} split is in {store.path} "
                f"(first id: '{missing[0]}'); point task.datamodule.vis_db (a pre-training "
                "corpus: its vis_db) at the store built for these annotations"
            )
        if missing:
            log.warning(
                "%s split: %d of %d videos are not in %s (first: '%s'); `python preprocess.py "
                "mode=check` lists them",
                split,
                len(missing),
                len(ids),
                store.path,
                missing[0],
            )

    def open_store(self, vis_db: str) -> VisualStore:
        """A store by path or ``s3://`` URL, object storage reached as ``storage`` says."""
        return open_store(vis_db, self.storage)

    def video_reader(self, vis_db: str, split: str) -> VideoClipReader:
        """Sampled clips of the videos in ``vis_db``: random ones in training."""
        return VideoClipReader(
            store=self.open_store(vis_db),
            decoder=build_decoder(self.decoder_name, self.decoder_fallback, self.decode_timeout),
            sampling=self.train_sampling if split == "train" else self.eval_sampling,
        )

    def build_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def collate_fn(self, split: str) -> Callable[[list[dict]], FramesBatch]:
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        splits = STAGE_SPLITS.get(stage, (self.predict_split,))
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(split)

    @property
    def batch_size(self) -> int:
        """Videos per training batch and process (what the global batch multiplies)."""
        return self.loaders.batch_size

    def _dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            raise RuntimeError(f"call setup() for the '{split}' split before asking for its loader")
        return self.datasets[split]

    def _evaluation_loader(self, split: str) -> DataLoader:
        return self.loaders.evaluation_loader(self._dataset(split), self.collate_fn(split))

    def train_dataloader(self) -> DataLoader:
        return self.loaders.training_loader(self._dataset("train"), self.collate_fn("train"))

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.predict_split)


class StoreDataModule(ClipBertDataModule):
    """A task over one annotation folder (``txt_db``, a jsonl file per split) and one store of
    its videos or images (``vis_db``), as the original's finetuning sets are laid out."""

    def __init__(
        self, *, txt_db: str, vis_db: str, splits: Mapping[str, str], **common: Any
    ) -> None:
        super().__init__(**common)
        self.txt_db = Path(txt_db)
        self.vis_db = str(vis_db)  # a folder, or an s3:// URL
        self.splits = dict(splits)

    def split_paths(self, split: str) -> list[Path]:
        """The jsonl files of a split: one, or several read one after another (VQA trains on
        VQA and Visual Genome questions)."""
        if split not in self.splits:
            raise KeyError(f"unknown split '{split}'; this task defines {sorted(self.splits)}")
        files = self.splits[split]
        return [self.txt_db / f for f in ([files] if isinstance(files, str) else files)]

    def load_split(self, split: str, load: Callable[[Path], list]) -> tuple[list, str]:
        """All examples of a split (the training share of them: ``data_ratio``), and its files
        named for logs and errors."""
        paths = self.split_paths(split)
        examples = [e for path in paths for e in load(path)]
        if split == "train":
            examples = self.training_share(examples)
        return examples, ", ".join(map(str, paths))

    def clip_reader(self, split: str) -> VideoClipReader:
        return self.video_reader(self.vis_db, split)


class VideoQADataModule(StoreDataModule):
    """Video QA: each video brings up to ``max_texts_per_video`` of its questions (the
    original's ``max_n_example_per_group``, 1 for its video tasks).

    Open-ended (``num_options`` None): answers are classified over ``ans2label``. Training
    questions whose answer is outside it are skipped and counted (``oov_training: skip``) or
    stop the run (``error``, the original's ``KeyError``); in evaluation they stay and count as
    wrong. Multiple choice (``num_options`` = 5 for TGIF Action / Transition): each option is
    one text, ``ans2label`` is not used.
    """

    def __init__(
        self,
        *,
        ans2label: str | None = None,
        num_options: int | None = None,
        oov_training: str = "skip",
        max_texts_per_video: int = 1,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if (ans2label is None) == (num_options is None):
            raise ValueError("give ans2label (open-ended QA) or num_options (multiple choice)")
        if oov_training not in ("skip", "error"):
            raise ValueError(f"oov_training must be 'skip' or 'error', got '{oov_training}'")
        self.ans2label_path = Path(ans2label) if ans2label is not None else None
        self.num_options = num_options
        self.oov_training = oov_training
        self.max_texts_per_video = max_texts_per_video
        self.skipped_out_of_vocabulary = 0

    @cached_property
    def ans2label(self) -> dict[str, int] | None:
        return None if self.ans2label_path is None else load_ans2label(self.ans2label_path)

    @property
    def answer_vocabulary(self) -> list[str] | None:
        """Answers indexed by label; None for multiple choice."""
        return None if self.ans2label is None else answers_by_label(self.ans2label)

    def answerable(self, example: VideoQAExample) -> bool:
        """Whether a training question has a gold answer with a label."""
        return example.answer in self.ans2label

    def _in_vocabulary(self, examples: list, path: str) -> list:
        """Training examples with an answer that has a label; the rest skipped and counted, or
        an error (``oov_training``)."""
        kept = [e for e in examples if self.answerable(e)]
        self.skipped_out_of_vocabulary = len(examples) - len(kept)
        if self.skipped_out_of_vocabulary and self.oov_training == "error":
            first = next(e for e in examples if not self.answerable(e))
            raise ValueError(
                f"{path}: {self.skipped_out_of_vocabulary} training answers are not in "
                f"{self.ans2label_path} (first: '{first.answer}', question {first.question_id}); "
                "extend the vocabulary or set task.datamodule.oov_training=skip"
            )
        if self.skipped_out_of_vocabulary:
            log.warning(
                "%s: skipped %d training questions whose answer is not in %s",
                path,
                self.skipped_out_of_vocabulary,
                self.ans2label_path,
            )
        return kept

    def load_examples(self, split: str) -> tuple[list, str]:
        """The split's questions (out-of-vocabulary training questions handled) and its files."""
        if self.num_options is not None:
            return self.load_split(split, lambda p: load_video_mc(p, self.num_options))
        examples, path = self.load_split(split, load_video_qa)
        return (self._in_vocabulary(examples, path) if split == "train" else examples), path

    def build_dataset(self, split: str) -> QADataset:
        examples, path = self.load_examples(split)
        log.info(
            "%s split: %d questions about %d videos from %s",
            split,
            len(examples),
            len({e.store_key for e in examples}),
            path,
        )
        reader = self.clip_reader(split)
        self.report_missing(split, [e.store_key for e in examples], reader.store)
        return QADataset(
            examples,
            reader,
            self.ans2label,
            self.max_texts_per_video,
            evaluation=split != "train",
        )

    def collate_fn(self, split: str) -> QACollator:
        return QACollator(self.text_tokenizer)


class ImageQADataModule(VideoQADataModule):
    """Image QA (VQA 2.0 and any set in its jsonl shape): images from the store, soft-scored
    answers over ``ans2label``, up to ``max_texts_per_video`` (2 for VQA) questions per image.

    Training questions with no answer in the vocabulary are handled as ``oov_training`` says.
    A question annotated ``labels: {}`` (no answer earned credit) is skipped in training like
    them, or trained towards all-zero scores as the original does (``empty_labels: train``); in
    evaluation it stays, and any answer scores 0 on it.
    """

    def __init__(
        self,
        *,
        ans2label: str,
        max_texts_per_video: int = 2,
        empty_labels: str = "skip",
        **common: Any,
    ) -> None:
        common.setdefault("train_sampling", {"n_clips": 1, "num_frames": 1})
        common.setdefault("eval_sampling", {"n_clips": 1, "num_frames": 1})
        super().__init__(ans2label=ans2label, max_texts_per_video=max_texts_per_video, **common)
        if empty_labels not in ("skip", "train"):
            raise ValueError(f"empty_labels must be 'skip' or 'train', got '{empty_labels}'")
        self.empty_labels = empty_labels
        self.skipped_empty_labels = 0

    def clip_reader(self, split: str) -> ImageReader:
        return ImageReader(self.open_store(self.vis_db))

    def answerable(self, example: ImageQAExample) -> bool:
        if example.answer_scores == {}:  # kept by empty_labels=train: all-zero targets
            return True
        return any(answer in self.ans2label for answer in example.answer_scores or {})

    def load_examples(self, split: str) -> tuple[list, str]:
        examples, path = self.load_split(split, load_image_qa)
        if split != "train":
            return examples, path
        if self.empty_labels == "skip":
            labelled = [e for e in examples if e.answer_scores != {}]
            self.skipped_empty_labels = len(examples) - len(labelled)
            if self.skipped_empty_labels:
                log.warning(
                    "%s: skipped %d training questions annotated 'labels: {}'; "
                    "task.datamodule.empty_labels=train trains them towards all-zero scores, "
                    "as the original",
                    path,
                    self.skipped_empty_labels,
                )
            examples = labelled
        return self._in_vocabulary(examples, path), path

    def collate_fn(self, split: str) -> QACollator:
        return QACollator(self.text_tokenizer, num_labels=len(self.ans2label))


class RankingTexts:
    """All captions of an evaluation split, tokenized once, and each one's video."""

    def __init__(
        self,
        captions: list[str],
        caption_ids: list,
        text_to_video: torch.Tensor,
        video_ids: list[str],
        tokenize: TextTokenizer,
    ) -> None:
        self.captions = captions
        self.caption_ids = caption_ids
        self.text_to_video = text_to_video
        self.video_ids = video_ids
        self.input_ids, self.attention_mask = tokenize(captions)

    def __len__(self) -> int:
        return len(self.captions)


class RetrievalDataModule(StoreDataModule):
    """Text-video retrieval (MSRVTT, DiDeMo and ActivityNet paragraphs).

    Training yields each caption with its video and ``num_negatives`` captions of other videos
    (image-text matching), and with ``mlm_probability`` > 0 a masked copy of each caption for
    the task's auxiliary MLM loss. Evaluation yields each distinct video once; the task scores
    every caption of the split (``ranking_texts``) against it.
    """

    def __init__(
        self, *, num_negatives: int = 1, mlm_probability: float = 0.0, **common: Any
    ) -> None:
        super().__init__(**common)
        self.num_negatives = num_negatives
        self.mlm_probability = mlm_probability
        self.ranking: dict[str, RankingTexts] = {}

    def build_dataset(self, split: str) -> Dataset:
        examples, path = self.load_split(split, load_captions)
        log.info(
            "%s split: %d captions of %d videos from %s",
            split,
            len(examples),
            len({e.video_id for e in examples}),
            path,
        )
        reader = self.clip_reader(split)
        self.report_missing(split, [e.video_id for e in examples], reader.store)
        if split == "train":
            return ImageTextMatchingDataset(examples, reader, self.num_negatives)
        video_ids = list(dict.fromkeys(e.video_id for e in examples))
        position = {video_id: i for i, video_id in enumerate(video_ids)}
        self.ranking[split] = RankingTexts(
            captions=[e.caption for e in examples],
            caption_ids=[e.caption_id for e in examples],
            text_to_video=torch.tensor([position[e.video_id] for e in examples]),
            video_ids=video_ids,
            tokenize=self.text_tokenizer,
        )
        return VideoListDataset(video_ids, reader)

    def ranking_texts(self, split: str) -> RankingTexts:
        if split not in self.ranking:
            raise RuntimeError(f"call setup() for the '{split}' split before ranking it")
        return self.ranking[split]

    def collate_fn(self, split: str) -> Callable[[list[dict]], FramesBatch]:
        if split == "train":
            return PairCollator(self.text_tokenizer, self.mlm_probability)
        return collate_videos
