"""Collate dataset items into batches: stack uint8 clips, tokenize texts as the original."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from clipbert.data.transforms import PendingResize, batch_frames, resize_pad_batch


@dataclass
class FramesBatch:
    """Frames as loaders ship them, plus what turns them into model input on the device.

    ``frames`` leaves the loader as uint8 at the videos' own sizes: one (V, n_clips,
    num_frames, 3, H, W) tensor when they share a size, else a tuple of V (n_clips, num_frames,
    3, h_i, w_i) tensors; ``resized`` turns either into the model's float
    (V, n_clips, num_frames, 3, S, S).
    """

    frames: torch.Tensor | tuple[torch.Tensor, ...]
    replaced: int = field(default=0, kw_only=True)  # unreadable training items replaced

    def resized(self, image_size: int) -> FramesBatch:
        """The batch with frames resized and padded to ``image_size`` (float32, 0-255)."""
        return replace(self, frames=resize_pad_batch(self.frames, image_size))

    def for_model(self, image_size: int) -> FramesBatch:
        """The batch as the model takes it: resized now while autograd records (training, one
        graph), else with the resize pending, so the CNN resizes each group of frames it reads
        (inference memory then does not hold every frame as float32)."""
        if torch.is_grad_enabled():
            return self.resized(image_size)
        return replace(self, frames=PendingResize(self.frames, image_size))

    def pin_memory(self) -> FramesBatch:
        """Called by the DataLoader when ``pin_memory=True``."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                setattr(self, f.name, value.pin_memory())
            elif isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
                setattr(self, f.name, tuple(v.pin_memory() for v in value))
        return self


@dataclass
class VideoQABatch(FramesBatch):
    """A batch of V videos and the Q questions asked about them, as R text rows.

    An open-ended question is one row; a multiple-choice question is ``texts_per_question``
    rows (``question + " " + option``), consecutive. ``labels`` has one entry per question.

    ``visual_index`` (R,) gives each text row's video, so a video is encoded once.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    visual_index: torch.Tensor
    labels: torch.Tensor
    texts_per_question: int = 1
    question_ids: list = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    answers: list[str | int | None] = field(default_factory=list)
    answer_types: list[str | None] = field(default_factory=list)
    options: list[tuple[str, ...]] = field(default_factory=list)  # empty when open-ended
    target_scores: torch.Tensor | None = None  # image QA: (Q, num_labels) soft scores
    broken: list[str | None] = field(default_factory=list)  # why a video was unreadable

    def broken_mask(self) -> torch.Tensor:
        """(Q,) True for questions whose video could not be read (evaluation only)."""
        flags = [reason is not None for reason in self.broken] or [False] * len(self)
        return torch.tensor(flags, device=self.labels.device)

    def __len__(self) -> int:
        """The number of questions (what metrics and losses average over)."""
        return self.labels.shape[0]


@dataclass
class PairBatch(FramesBatch):
    """Retrieval training: R (text, video) pairs over V videos, labelled 1 (match) or 0."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    visual_index: torch.Tensor
    labels: torch.Tensor
    video_ids: list[str] = field(default_factory=list)  # (V,), for in-batch negatives
    # the matching texts again, masked for MLM (labels -100 where not masked); None: no MLM
    mlm_input_ids: torch.Tensor | None = None
    mlm_labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass
class VideoBatch(FramesBatch):
    """Videos alone, for ranking: ``indices`` into the split's video list."""

    indices: torch.Tensor
    video_ids: list[str] = field(default_factory=list)
    broken: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return self.indices.shape[0]


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


def frames_and_texts(items: list[dict], tokenize: TextTokenizer) -> dict[str, torch.Tensor]:
    """The fields every text-video batch has: uint8 frames, the tokenized ``texts`` of all
    items, and each text's video."""
    input_ids, attention_mask = tokenize([text for item in items for text in item["texts"]])
    counts = torch.tensor([len(item["texts"]) for item in items])
    return {
        "frames": batch_frames([item["frames"] for item in items]),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "visual_index": torch.arange(len(items)).repeat_interleave(counts),
        "replaced": sum(item.get("replaced", 0) for item in items),
    }


class VideoQACollator:
    """Turns a list of :class:`~clipbert.data.datasets.VideoQADataset` items into a batch.

    With ``num_labels`` (image QA) it also scatters each question's soft answer scores into a
    dense (Q, num_labels) target, as the original's VQA loader does.
    """

    def __init__(self, tokenize: TextTokenizer, num_labels: int | None = None) -> None:
        self.tokenize = tokenize
        self.num_labels = num_labels

    def _target_scores(self, per_question: list[dict[int, float]]) -> torch.Tensor:
        target = torch.zeros(len(per_question), self.num_labels)
        for row, scores in enumerate(per_question):
            for label, score in scores.items():
                target[row, label] = score
        return target

    def __call__(self, items: list[dict]) -> VideoQABatch:
        def gather(key: str) -> list:
            return [value for item in items for value in item[key]]

        questions = gather("questions")
        return VideoQABatch(
            **frames_and_texts(items, self.tokenize),
            labels=torch.tensor(gather("labels"), dtype=torch.long),
            texts_per_question=len(gather("texts")) // len(questions),
            question_ids=gather("question_ids"),
            questions=questions,
            answers=gather("answers"),
            answer_types=gather("answer_types"),
            options=gather("options"),
            broken=gather("broken"),
            target_scores=None
            if self.num_labels is None
            else self._target_scores(gather("answer_scores")),
        )


class PairCollator:
    """Batches :class:`~clipbert.data.datasets.ImageTextMatchingDataset` items.

    With ``mlm_probability`` > 0 it also masks a copy of the matching texts as BERT does (of
    the chosen tokens 80% become [MASK], 10% a random token, 10% stay; never [CLS], [SEP] or
    padding), which the original's pre-training collator did for its MLM loss.
    """

    def __init__(self, tokenize: TextTokenizer, mlm_probability: float = 0.0) -> None:
        if not 0.0 <= mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in [0, 1), got {mlm_probability}")
        self.tokenize = tokenize
        self.special_ids = torch.tensor(tokenize.tokenizer.all_special_ids)
        self.masker = (
            DataCollatorForLanguageModeling(tokenize.tokenizer, mlm_probability=mlm_probability)
            if mlm_probability > 0
            else None
        )

    def __call__(self, items: list[dict]) -> PairBatch:
        common = frames_and_texts(items, self.tokenize)
        labels = torch.tensor([label for item in items for label in item["labels"]])
        batch = PairBatch(**common, labels=labels, video_ids=[item["video_id"] for item in items])
        if self.masker is not None:
            ids = batch.input_ids[labels == 1]
            special = torch.isin(ids, self.special_ids)
            batch.mlm_input_ids, batch.mlm_labels = self.masker.torch_mask_tokens(
                ids.clone(), special_tokens_mask=special
            )
        return batch


def collate_videos(items: list[dict]) -> VideoBatch:
    """Batches :class:`~clipbert.data.datasets.VideoListDataset` items."""
    return VideoBatch(
        frames=batch_frames([item["frames"] for item in items]),
        indices=torch.tensor([item["index"] for item in items]),
        video_ids=[item["video_id"] for item in items],
        broken=[item["broken"] for item in items],
    )
