"""Image QA (VQA 2.0 and sets in its jsonl shape): soft-score BCE, the VQA score."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clipbert.data.collate import VideoQABatch
from clipbert.metrics import VQAScore
from clipbert.tasks.video_qa import VideoQATask

VQA_ANSWER_TYPES = ("yes/no", "number", "other")


class ImageQATask(VideoQATask):
    """An image is a one-frame clip; the head classifies over the answer vocabulary (3129 for
    VQA). The loss is BCE with the soft scores as targets, summed over labels and averaged
    over questions, as the original's; the metric is the VQA score (the gold soft score of the
    predicted answer), overall and per answer type.
    """

    def __init__(
        self,
        backbone,
        *,
        answer_vocabulary: Sequence[str],
        answer_types: Sequence[str] = VQA_ANSWER_TYPES,
        **task_kwargs,
    ) -> None:
        super().__init__(
            backbone, answer_vocabulary=answer_vocabulary, answer_types=answer_types, **task_kwargs
        )
        self.val_acc = VQAScore(answer_types)
        self.test_acc = VQAScore(answer_types)

    primary_metric = "score"

    def targets(self, batch: VideoQABatch) -> torch.Tensor:
        return batch.target_scores

    def loss_weight(self, batch: VideoQABatch) -> int:
        return len(batch)  # the soft-score loss averages over every question

    def _loss(self, logits: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
        width = target_scores.shape[1]
        losses = F.binary_cross_entropy_with_logits(
            logits[:, :width].float(), target_scores, reduction="none"
        )
        return losses.sum(dim=1).mean()

    def update_metric(
        self, metric: VQAScore, predicted: torch.Tensor, batch: VideoQABatch, broken: torch.Tensor
    ) -> None:
        """The VQA score; a question on an unreadable video earns 0."""
        earned = batch.target_scores.masked_fill(broken[:, None], 0.0)
        metric.update(predicted, earned, batch.answer_types)

    def describe(self, batch: VideoQABatch, i: int, indices: list[int], probs: list[float]) -> dict:
        record = super().describe(batch, i, indices, probs)
        row = batch.target_scores[i]
        gold = {self.answer_vocabulary[j]: round(row[j].item(), 4) for j in row.nonzero().flatten()}
        return {**record, "gold_scores": gold}
