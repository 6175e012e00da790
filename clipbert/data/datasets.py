"""Datasets: annotation examples + visual store -> decoded, sampled, resized uint8 clips."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from clipbert.data.annotations import VideoQAExample
from clipbert.data.decoding import VideoDecoder, VideoInfo
from clipbert.data.sampling import sample_frame_indices
from clipbert.data.stores import VisualStore
from clipbert.data.transforms import ResizePad

IGNORE_LABEL = -100
"""Label of an answer outside the vocabulary: ignored by the loss, counted wrong by metrics."""


@dataclass(frozen=True)
class FrameSampling:
    """How clips and frames are drawn from one video (the paper's N x T at ``fps``)."""

    n_clips: int = 1
    num_frames: int = 2
    fps: float = 1.0
    strategy: str = "rand"


class VideoClipReader:
    """Reads one video from the store and returns its sampled clips, resized and padded.

    Randomness comes from torch's generator so that DataLoader workers, which torch seeds
    differently per worker and per epoch, never repeat each other's clips.
    """

    def __init__(
        self,
        store: VisualStore,
        decoder: VideoDecoder,
        sampling: FrameSampling,
        image_size: int,
    ) -> None:
        self.store = store
        self.decoder = decoder
        self.sampling = sampling
        self.resize_pad = ResizePad(image_size)

    def _indices(self, info: VideoInfo) -> list[int]:
        s = self.sampling
        rng = random.Random(int(torch.randint(2**62, ()).item())) if s.strategy == "rand" else None
        clips = sample_frame_indices(
            info.num_frames,
            info.fps,
            n_clips=s.n_clips,
            num_frames=s.num_frames,
            fps=s.fps,
            strategy=s.strategy,
            rng=rng,
        )
        return [index for clip in clips for index in clip]

    def __call__(self, video_id: str) -> torch.Tensor:
        """Return uint8 frames shaped (n_clips, num_frames, 3, S, S)."""
        frames = self.decoder.read(self.store.get(video_id), self._indices)
        frames = self.resize_pad(frames)
        return frames.view(self.sampling.n_clips, self.sampling.num_frames, *frames.shape[1:])


class VideoQADataset(Dataset):
    """One item per question: the question's video clips, text and answer label."""

    def __init__(
        self,
        examples: Sequence[VideoQAExample],
        read_clips: VideoClipReader,
        ans2label: dict[str, int],
    ) -> None:
        self.examples = list(examples)
        self.read_clips = read_clips
        self.ans2label = ans2label

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        label = self.ans2label.get(example.answer, IGNORE_LABEL)
        return {
            "frames": self.read_clips(example.video_id),
            "question": example.question,
            "label": label,
            "question_id": example.question_id,
            "video_id": example.video_id,
            "answer": example.answer,
            "answer_type": example.answer_type,
        }
