"""What the loaders hand the model: uint8 frames as decoded, at the videos' own size, and the
tokenized texts paired with them. The model turns the frames into its input on its device
(:class:`clipbert.models.frame_input.FrameInput`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

Frames = Tensor | tuple[Tensor, ...]
"""V videos' uint8 frames: one (V, n_clips, num_frames, 3, H, W) tensor when they share a
size, else a tuple of V (n_clips, num_frames, 3, h_i, w_i) tensors."""


def batch_frames(frames: Sequence[Tensor]) -> Frames:
    """Per-video uint8 frames (..., 3, h_i, w_i) -> one stacked tensor when they share a size
    (the common case), else the tuple itself: padding a 176x144 clip to 1920x1080 beside it
    would copy hundreds of MB of zeros per batch (the model's input transform takes both)."""
    first = frames[0].shape
    if all(f.shape == first for f in frames):
        return torch.stack(list(frames))  # keeps the frames' layout
    return tuple(frames)


@dataclass
class FramesBatch:
    """Frames as loaders ship them (see :data:`Frames`), and how many unreadable training
    items the batch's items stand in for."""

    frames: Frames
    replaced: int = field(default=0, kw_only=True)  # unreadable training items replaced
    # evaluation: each video's sampled frame times in seconds (clips concatenated), for reports
    frame_times: list[list[float]] = field(default_factory=list, kw_only=True)

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
class QABatch(FramesBatch):
    """A batch of V videos (or images) and the Q questions asked about them, as R text rows:
    open-ended video QA, image QA and multiple choice.

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
    video_ids: list[str] = field(default_factory=list)  # (V,) the store keys of the videos

    def question_video_id(self, i: int) -> str | None:
        """The store key of question ``i``'s video (None in batches built without them)."""
        if not self.video_ids:
            return None
        return self.video_ids[int(self.visual_index[i * self.texts_per_question])]

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


@dataclass
class PretrainBatch(FramesBatch):
    """Pre-training: R captions over V videos (or images) of one corpus, each matched with its
    own video or replaced by another's caption (``itm_labels`` 1 / 0), and masked for MLM
    (``mlm_labels``: the masked tokens' ids, -100 elsewhere); ``input_ids`` are the masked ids."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    visual_index: torch.Tensor
    mlm_labels: torch.Tensor
    itm_labels: torch.Tensor
    corpus: str = ""
    broken: list[str | None] = field(default_factory=list)  # evaluation: why a video was unreadable

    def __len__(self) -> int:
        return self.itm_labels.shape[0]
