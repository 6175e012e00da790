"""Open-ended video QA (MSRVTT-QA, TGIF FrameQA, the demo): classify over an answer vocabulary."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clipbert.data.collate import VideoQABatch
from clipbert.data.datasets import IGNORE_LABEL
from clipbert.metrics import QAAccuracy
from clipbert.models.heads import MLPClassifier
from clipbert.tasks.base import ClipBertTask, aggregate_clip_logits

TOP_K = 5


class VideoQATask(ClipBertTask):
    """Per-clip MLP logits, aggregated over clips by ``score_agg``, cross-entropy over answers.

    The classifier is ``max(len(vocabulary), min_num_labels)`` wide as in the original
    (1500 for MSRVTT-QA, 1540 for FrameQA); predictions are restricted to real answers.
    """

    def __init__(
        self,
        backbone,
        *,
        answer_vocabulary: Sequence[str],
        answer_types: Sequence[str] = (),
        min_num_labels: int = 0,
        classifier_dropout: float = 0.1,
        **task_kwargs,
    ) -> None:
        super().__init__(backbone, **task_kwargs)
        self.answer_vocabulary = list(answer_vocabulary)
        # Plain lists only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters(
            {"answer_vocabulary": self.answer_vocabulary, "answer_types": list(answer_types)}
        )
        num_labels = max(len(self.answer_vocabulary), min_num_labels)
        self.head = MLPClassifier(backbone.hidden_size, num_labels, dropout=classifier_dropout)
        self.val_acc = QAAccuracy(answer_types)
        self.test_acc = QAAccuracy(answer_types)

    def forward(self, batch: VideoQABatch) -> torch.Tensor:
        """Aggregated answer logits (B, num_labels)."""
        pooled = self.backbone(
            batch.frames, batch.input_ids, batch.attention_mask, batch.visual_index
        )
        return aggregate_clip_logits(self.head(pooled), self.score_agg)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_LABEL, reduction="sum")
        return losses / (labels != IGNORE_LABEL).sum().clamp(min=1)

    def _answer_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities over the real answers only (columns past the vocabulary dropped)."""
        return logits[:, : len(self.answer_vocabulary)].float().softmax(dim=-1)

    def training_step(self, batch: VideoQABatch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(self(batch), batch.labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _eval_step(self, batch: VideoQABatch, stage: str, metric: QAAccuracy) -> None:
        logits = self(batch)
        self.log(f"{stage}/loss", self._loss(logits, batch.labels), batch_size=len(batch))
        predicted = logits[:, : len(self.answer_vocabulary)].argmax(dim=-1)
        metric.update(predicted, batch.labels, batch.answer_types)

    def _log_metric(self, stage: str, metric: QAAccuracy) -> None:
        values = metric.compute()
        self.log(f"{stage}/acc", values.pop("acc"), prog_bar=True)
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()})
        metric.reset()

    def validation_step(self, batch: VideoQABatch, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        self._log_metric("val", self.val_acc)

    def test_step(self, batch: VideoQABatch, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def on_test_epoch_end(self) -> None:
        self._log_metric("test", self.test_acc)

    def predict_step(self, batch: VideoQABatch, batch_idx: int) -> list[dict]:
        scores = self._answer_scores(self(batch))
        top = scores.topk(min(TOP_K, scores.shape[-1]), dim=-1)
        records = []
        for i in range(len(batch)):
            answers = [self.answer_vocabulary[j] for j in top.indices[i].tolist()]
            records.append(
                {
                    "question_id": batch.question_ids[i],
                    "question": batch.questions[i],
                    "answer_type": batch.answer_types[i],
                    "prediction": answers[0],
                    "top5": [
                        {"answer": a, "prob": round(p, 6)}
                        for a, p in zip(answers, top.values[i].tolist(), strict=True)
                    ],
                    "gold": batch.answers[i],
                }
            )
        return records
