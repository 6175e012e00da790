"""Collate dataset items into batches: stack uint8 clips, tokenize texts as the original."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from transformers import PreTrainedTokenizerBase


@dataclass
class VideoQABatch:
    """A batch of V videos and the E questions asked about them.

    ``frames`` stays uint8 (V, n_clips, num_frames, 3, S, S) until the model normalises it on
    the device, which keeps host memory and host-to-device copies four times smaller.
    ``visual_index`` (E,) gives each question's video, so a video is encoded once.
    """

    frames: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    visual_index: torch.Tensor
    labels: torch.Tensor
    question_ids: list = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    answer_types: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        """The number of questions (what metrics and losses average over)."""
        return self.labels.shape[0]

    def pin_memory(self) -> VideoQABatch:
        """Called by the DataLoader when ``pin_memory=True``."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                setattr(self, f.name, value.pin_memory())
        return self


class TextTokenizer:
    """Tokenize as the original: one segment ``[CLS] text [SEP]``, padded to ``max_txt_len``."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_txt_len: int) -> None:
        if max_txt_len < 3:
            raise ValueError(f"max_txt_len must be >= 3 (got {max_txt_len})")
        self.tokenizer = tokenizer
        self.max_txt_len = max_txt_len

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.max_txt_len,
            return_tensors="pt",
        )
        return encoded["input_ids"], encoded["attention_mask"]


class VideoQACollator:
    """Turns a list of :class:`~clipbert.data.datasets.VideoQADataset` items into a batch."""

    def __init__(self, tokenize: TextTokenizer) -> None:
        self.tokenize = tokenize

    def __call__(self, items: list[dict]) -> VideoQABatch:
        def gather(key: str) -> list:
            return [value for item in items for value in item[key]]

        questions = gather("questions")
        input_ids, attention_mask = self.tokenize(questions)
        counts = torch.tensor([len(item["questions"]) for item in items])
        return VideoQABatch(
            frames=torch.stack([item["frames"] for item in items]),
            input_ids=input_ids,
            attention_mask=attention_mask,
            visual_index=torch.arange(len(items)).repeat_interleave(counts),
            labels=torch.tensor(gather("labels"), dtype=torch.long),
            question_ids=gather("question_ids"),
            questions=questions,
            answers=gather("answers"),
            answer_types=gather("answer_types"),
        )
