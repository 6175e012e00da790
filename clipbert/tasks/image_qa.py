"""Image QA (VQA 2.0 and sets in its jsonl shape): soft-score BCE, the VQA score."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clipbert.data.batches import QABatch
from clipbert.metrics import vqa_earned
from clipbert.tasks.video_qa import VideoQATask

VQA_ANSWER_TYPES = ("yes/no", "number", "other")


class ImageQATask(VideoQATask):
    """An image is a one-frame clip; the head classifies over the answer vocabulary (3129 for
    VQA). The loss is BCE with the soft scores as targets, summed over labels and averaged
    over questions, as the original's; the metric is the VQA score (the gold soft score of the
    predicted answer), overall and per answer type. Each answer's probability is its sigmoid,
    as the BCE loss trains it.
    """

    metric_name = "score"

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

    def targets(self, batch: QABatch) -> torch.Tensor:
        return batch.target_scores

    def loss_weight(self, batch: QABatch) -> int:
        return len(batch)  # the soft-score loss averages over every question

    def _loss(self, logits: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
        width = target_scores.shape[1]
        losses = F.binary_cross_entropy_with_logits(
            logits[:, :width].float(), target_scores, reduction="none"
        )
        return losses.sum(dim=1).mean()

    def answer_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.candidate_logits(logits).float().sigmoid()

    def question_scores(self, predicted: torch.Tensor, batch: QABatch) -> torch.Tensor:
        """The VQA score: the soft score of the predicted answer."""
        return vqa_earned(predicted, batch.target_scores)

    def describe(self, batch: QABatch, i: int, indices: list[int], probs: list[float]) -> dict:
        record = super().describe(batch, i, indices, probs)
        row = batch.target_scores[i]
        gold = {self.answer_vocabulary[j]: round(row[j].item(), 4) for j in row.nonzero().flatten()}
        return {**record, "gold_scores": gold}

    def original_result(self, record: dict) -> dict:
        """The VQA submission format, as the original writes it."""
        return {"question_id": record["question_id"], "answer": record["prediction"]}
