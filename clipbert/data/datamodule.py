"""LightningDataModule for open-ended video QA over the original's txt_db / vis_db layout."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader
from transformers import BertTokenizerFast

from clipbert.data.annotations import answer_vocabulary, load_ans2label, load_video_qa
from clipbert.data.collate import TextTokenizer, VideoQABatch, VideoQACollator
from clipbert.data.datasets import FrameSampling, VideoClipReader, VideoQADataset
from clipbert.data.decoding import build_decoder
from clipbert.data.stores import open_store

log = logging.getLogger(__name__)

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


def load_tokenizer(tokenizer_dir: str | Path) -> BertTokenizerFast:
    """Load a local BERT WordPiece tokenizer; never downloads."""
    path = Path(tokenizer_dir)
    if not (path / "vocab.txt").is_file() and not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"no tokenizer in {path}: expected vocab.txt or tokenizer.json "
            "(set model tokenizer_dir / task.datamodule.tokenizer_dir to a local folder)"
        )
    return BertTokenizerFast.from_pretrained(str(path), local_files_only=True)


class VideoQADataModule(pl.LightningDataModule):
    """Builds train/val/test/predict loaders for open-ended video QA.

    ``batch_size`` counts videos; each brings up to ``max_texts_per_video`` of its questions
    (the original's ``max_n_example_per_group``, 1 for its video tasks).

    Training questions whose answer is outside ``ans2label`` are skipped and counted (the
    original raised ``KeyError``); in evaluation they stay and count as wrong.
    """

    def __init__(
        self,
        *,
        txt_db: str,
        vis_db: str,
        ans2label: str,
        tokenizer_dir: str,
        splits: Mapping[str, str],
        image_size: int,
        max_txt_len: int,
        train_sampling: Mapping[str, Any],
        eval_sampling: Mapping[str, Any],
        batch_size: int,
        eval_batch_size: int,
        max_texts_per_video: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        decoder: str = "decord",
        predict_split: str = "test",
        prepare: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError("batch_size and eval_batch_size must be >= 1")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
            raise ValueError(f"image_size must be an int >= 32 (one res5 cell), got {image_size!r}")
        self.txt_db = Path(txt_db)
        self.vis_db = Path(vis_db)
        self.ans2label_path = Path(ans2label)
        self.tokenizer_dir = Path(tokenizer_dir)
        self.splits = dict(splits)
        self.image_size = image_size
        self.max_txt_len = max_txt_len
        self.train_sampling = FrameSampling(**train_sampling)
        self.eval_sampling = FrameSampling(**eval_sampling)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_texts_per_video = max_texts_per_video
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.decoder_name = decoder
        self.predict_split = predict_split
        self._prepare = prepare
        self.datasets: dict[str, VideoQADataset] = {}
        self.skipped_out_of_vocabulary = 0

    def prepare_data(self) -> None:
        """Run the task's preparation hook (the demo generates its data here)."""
        if self._prepare is not None:
            self._prepare()

    @cached_property
    def ans2label(self) -> dict[str, int]:
        return load_ans2label(self.ans2label_path)

    @property
    def answer_vocabulary(self) -> list[str]:
        """Answers indexed by label."""
        return answer_vocabulary(self.ans2label)

    @cached_property
    def tokenizer(self) -> BertTokenizerFast:
        return load_tokenizer(self.tokenizer_dir)

    def split_path(self, split: str) -> Path:
        if split not in self.splits:
            raise KeyError(f"unknown split '{split}'; this task defines {sorted(self.splits)}")
        return self.txt_db / self.splits[split]

    def build_dataset(self, split: str) -> VideoQADataset:
        examples = load_video_qa(self.split_path(split))
        is_train = split == "train"
        if is_train:
            kept = [e for e in examples if e.answer in self.ans2label]
            self.skipped_out_of_vocabulary = len(examples) - len(kept)
            if self.skipped_out_of_vocabulary:
                log.warning(
                    "%s: skipped %d training questions whose answer is not in %s",
                    self.split_path(split),
                    self.skipped_out_of_vocabulary,
                    self.ans2label_path,
                )
            examples = kept
        reader = VideoClipReader(
            store=open_store(self.vis_db),
            decoder=build_decoder(self.decoder_name),
            sampling=self.train_sampling if is_train else self.eval_sampling,
        )
        dataset = VideoQADataset(examples, reader, self.ans2label, self.max_texts_per_video)
        log.info(
            "%s split: %d questions about %d videos from %s",
            split,
            len(examples),
            len({e.video_id for e in examples}),
            self.split_path(split),
        )
        return dataset

    def setup(self, stage: str) -> None:
        splits = STAGE_SPLITS.get(stage, (self.predict_split,))
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"call setup() for the '{split}' split before asking for its loader")
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=VideoQACollator(TextTokenizer(self.tokenizer, self.max_txt_len)),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split, shuffle=False)

    def on_after_batch_transfer(self, batch: VideoQABatch, dataloader_idx: int) -> VideoQABatch:
        """Resize and pad the uint8 frames on the device, exactly as the original (float)."""
        return batch.resized(self.image_size)
