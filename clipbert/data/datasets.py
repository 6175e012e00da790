"""Datasets: annotation examples + visual store -> decoded, sampled uint8 clips."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from clipbert.data.annotations import (
    CaptionExample,
    ImageQAExample,
    VideoMCExample,
    VideoQAExample,
)
from clipbert.data.decoding import DecodeError
from clipbert.data.readers import ImageReader, VideoClipReader, read_or_mark

log = logging.getLogger(__name__)

IGNORE_LABEL = -100
"""Label of an answer outside the vocabulary: ignored by the loss, counted wrong by metrics."""


class ReplaceBroken(Dataset):
    """Training items: seeded random draws, and an unreadable video replaced by another item.

    Indexed by ``(index, seed)`` (see :class:`clipbert.data.training_order.SeededShuffleSampler`),
    every random draw made while reading the item comes from ``seed`` and leaves the process's
    random stream as it was. At most ``attempts`` reads per item; the returned item records in
    ``replaced`` how many unreadable ones it stands for, so the training loop can log
    ``data/broken``, and in ``seed`` its seed, for draws made when it is batched. Many
    failures in a row point at a wrong store or decoder, not at a few bad files, and stop the
    run.
    """

    def __init__(self, dataset: Dataset, attempts: int = 10) -> None:
        self.dataset = dataset
        self.attempts = attempts

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return {**self._read(index), "seed": seed}

    def _read(self, index: int) -> dict:
        reasons = []
        for _ in range(self.attempts):
            try:
                item = self.dataset[index]
            except (DecodeError, KeyError) as err:  # KeyError: the store has no such key
                reasons.append(str(err.args[0] if err.args else type(err).__name__))
                log.warning("unreadable in training, replaced by another sample: %s", reasons[-1])
                index = int(torch.randint(len(self.dataset), ()).item())
                continue
            return {**item, "replaced": len(reasons)}
        raise RuntimeError(
            f"{self.attempts} training samples in a row could not be read, so the store or the "
            f"decoder is likely wrong (check vis_db and decoder). Last error: {reasons[-1]}"
        )


def group_by_video(
    examples: Sequence[VideoQAExample | VideoMCExample], max_per_video: int
) -> list[list[VideoQAExample | VideoMCExample]]:
    """Chunks of at most ``max_per_video`` questions sharing one video, in first-seen order.

    This is the original's ``max_n_example_per_group``: the questions of one chunk share one
    decoded clip set and one CNN pass.
    """
    if max_per_video < 1:
        raise ValueError(f"max_texts_per_video must be >= 1 (got {max_per_video})")
    by_video: dict[str, list[VideoQAExample | VideoMCExample]] = {}
    for example in examples:
        by_video.setdefault(example.store_key, []).append(example)
    return [
        questions[start : start + max_per_video]
        for questions in by_video.values()
        for start in range(0, len(questions), max_per_video)
    ]


def pad_group(group: list, size: int) -> list:
    """A short training chunk filled up to ``size`` by drawing its own examples again, with
    replacement, as the original does, so every video weighs the same in a batch."""
    missing = size - len(group)
    if missing <= 0:
        return group
    draws = torch.randint(len(group), (missing,)).tolist()
    return group + [group[i] for i in draws]


class GroupRead(NamedTuple):
    """What :func:`read_group` gives: the video's frames, why it could not be read, the
    frames' times in seconds (evaluation only) and the group's examples."""

    frames: torch.Tensor
    broken: str | None
    times: list[float]
    group: list


def read_group(
    read: VideoClipReader | ImageReader, group: list, size: int, evaluation: bool
) -> GroupRead:
    """The frames of a group's video, why it could not be read (evaluation only: the video is
    marked, :func:`read_or_mark`) and the group's examples (training fills a short group up to
    ``size``, :func:`pad_group`; an unreadable video raises for ``ReplaceBroken``)."""
    video_id = group[0].store_key
    if evaluation:
        return GroupRead(*read_or_mark(read, video_id), group)
    return GroupRead(read(video_id), None, [], pad_group(group, size))


class QADataset(Dataset):
    """One item per video (or image) chunk: its clips and up to ``max_texts_per_video`` of its
    questions.

    Open-ended questions (``VideoQAExample``) give one text each, labelled through
    ``ans2label`` (``IGNORE_LABEL`` when the answer is outside it); image questions
    (``ImageQAExample``) also bring their answers' soft scores. Multiple-choice questions
    (``VideoMCExample``) give one text per option and their answer index as the label.
    """

    def __init__(
        self,
        examples: Sequence[VideoQAExample | VideoMCExample | ImageQAExample],
        read_clips: VideoClipReader | ImageReader,
        ans2label: dict[str, int] | None = None,
        max_texts_per_video: int = 1,
        evaluation: bool = False,
    ) -> None:
        self.groups = group_by_video(examples, max_texts_per_video)
        self.max_texts_per_video = max_texts_per_video
        self.evaluation = evaluation
        self.num_questions = len(examples)
        self.read_clips = read_clips
        self.ans2label = ans2label

    def __len__(self) -> int:
        return len(self.groups)

    def _label(self, example: VideoQAExample | VideoMCExample | ImageQAExample) -> int:
        if isinstance(example, VideoMCExample):
            return IGNORE_LABEL if example.answer is None else example.answer
        if self.ans2label is None:
            raise ValueError("open-ended questions need an ans2label vocabulary")
        return self.ans2label.get(example.answer, IGNORE_LABEL)

    def __getitem__(self, index: int) -> dict:
        frames, broken, times, group = read_group(
            self.read_clips, self.groups[index], self.max_texts_per_video, self.evaluation
        )
        video_id = group[0].store_key
        return {
            "frames": frames,
            "frame_times": times,
            "broken": [broken] * len(group),
            "video_id": video_id,
            "texts": [text for e in group for text in e.texts()],
            "questions": [e.question for e in group],
            "labels": [self._label(e) for e in group],
            "question_ids": [e.question_id for e in group],
            "answers": [e.answer for e in group],
            "answer_scores": [self._scores(e) for e in group],
            "options": [getattr(e, "options", ()) for e in group],
            "answer_types": [e.answer_type for e in group],
        }

    def _scores(self, example: VideoQAExample | VideoMCExample | ImageQAExample) -> dict:
        """Label -> soft score of an image QA question (answers outside the vocabulary left
        out, so they can only lower the score); empty for other questions."""
        scores = getattr(example, "answer_scores", None) or {}
        return {self.ans2label[a]: s for a, s in scores.items() if a in self.ans2label}


class ImageTextMatchingDataset(Dataset):
    """Retrieval training: each caption with its video (label 1) and ``num_negatives`` captions
    of other videos (label 0), drawn afresh every time the item is read, as the original.

    Texts are ordered [positive, its negatives]; the video is decoded once for all of them.
    """

    def __init__(
        self,
        examples: Sequence[CaptionExample],
        read_clips: VideoClipReader,
        num_negatives: int = 1,
    ) -> None:
        if num_negatives < 1:
            raise ValueError(
                f"num_negatives must be >= 1 (the original uses 1), got {num_negatives}"
            )
        if len({e.video_id for e in examples}) < 2:
            raise ValueError("negative captions need at least two videos")
        self.examples = list(examples)
        self.read_clips = read_clips
        self.num_negatives = num_negatives

    def __len__(self) -> int:
        return len(self.examples)

    def _negative(self, video_id: str) -> CaptionExample:
        # Uniform over captions of other videos; torch's RNG so workers draw differently.
        while True:
            candidate = self.examples[int(torch.randint(len(self.examples), ()).item())]
            if candidate.video_id != video_id:
                return candidate

    def __getitem__(self, index: int) -> dict:
        positive = self.examples[index]
        negatives = [self._negative(positive.video_id) for _ in range(self.num_negatives)]
        return {
            "frames": self.read_clips(positive.video_id),
            "video_id": positive.video_id,
            "texts": [positive.caption, *(n.caption for n in negatives)],
            "labels": [1] + [0] * self.num_negatives,
        }


class VideoListDataset(Dataset):
    """Each distinct video of a split once, for ranking all captions against all videos."""

    def __init__(self, video_ids: Sequence[str], read_clips: VideoClipReader) -> None:
        self.video_ids = list(video_ids)
        self.read_clips = read_clips

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> dict:
        video_id = self.video_ids[index]
        frames, broken, times = read_or_mark(self.read_clips, video_id)
        return {
            "frames": frames,
            "frame_times": times,
            "broken": broken,
            "video_id": video_id,
            "index": index,
        }
