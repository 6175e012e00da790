"""Keeps thumbnails of the frames each predicted video was shown, for the prediction report.

A callback rather than a second decoding pass: the thumbnails come from the prediction batches
themselves, after the loader decoded and sampled them for the model."""

from __future__ import annotations

import time

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from clipbert.data.batches import FramesBatch, QABatch, VideoBatch
from clipbert.reports.thumbnails import video_thumbnails
from clipbert.runs.devices import from_every_process


def split_size(trainer: pl.Trainer) -> int:
    """Examples in the prediction split: questions, or videos for a ranking."""
    loaders = trainer.predict_dataloaders
    loader = loaders[0] if isinstance(loaders, list) else loaders
    dataset = loader.dataset
    return int(getattr(dataset, "num_questions", len(dataset)))


class PredictionFrames(pl.Callback):
    """``videos``: store key -> ``{"clips": [[{"t", "src"}, ...], ...], "broken": bool}`` for
    every video predicted, once each.

    With ``max_examples``, a split larger than that keeps nothing (``enabled`` turns False),
    so a huge split costs no time or memory; ``report=true`` passes None to keep everything.
    """

    def __init__(self, max_examples: int | None = None, height: int | None = None) -> None:
        self.max_examples = max_examples
        self.height = height
        self.enabled = True
        self.videos: dict[str, dict] = {}
        self.seconds = 0.0  # spent making thumbnails, for the report's cost in the log

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.videos = {}
        self.seconds = 0.0
        size = split_size(trainer)
        self.enabled = self.max_examples is None or size <= self.max_examples
        if not self.enabled:
            rank_zero_info(
                f"no report: the split has {size} examples, more than report_max_examples="
                f"{self.max_examples} (report=true writes it anyway)"
            )

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: FramesBatch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        video_ids = getattr(batch, "video_ids", None)
        if not self.enabled or not video_ids:
            return
        start = time.perf_counter()
        broken = self._broken_videos(batch)
        for v, video_id in enumerate(video_ids):
            if video_id in self.videos:
                continue
            times = batch.frame_times[v] if batch.frame_times else []
            self.videos[video_id] = {
                "clips": video_thumbnails(batch.frames[v], times, self.height),
                "broken": video_id in broken,
            }
        self.seconds += time.perf_counter() - start

    @staticmethod
    def _broken_videos(batch: FramesBatch) -> set[str]:
        """Store keys whose placeholder frames stand in for an unreadable video."""
        if isinstance(batch, VideoBatch):  # one reason per video
            return {v for v, r in zip(batch.video_ids, batch.broken, strict=True) if r}
        if isinstance(batch, QABatch):  # one reason per question
            return {batch.question_video_id(i) for i, r in enumerate(batch.broken) if r}
        return set()

    def every_process_videos(self) -> dict[str, dict]:
        """The thumbnails of all processes (each predicted its own part of the split)."""
        parts = from_every_process(self.videos)
        return {key: value for part in parts for key, value in part.items()}
