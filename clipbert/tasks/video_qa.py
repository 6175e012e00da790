"""Video QA: open-ended (MSRVTT-QA, TGIF FrameQA, the demo) and multiple choice (TGIF Action,
Transition). Both classify, so they share loss, metrics and the evaluation loop."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from clipbert.data.collate import VideoQABatch
from clipbert.data.datasets import IGNORE_LABEL
from clipbert.metrics import QAAccuracy
from clipbert.models.heads import MLPClassifier, group_options
from clipbert.tasks.base import ClipBertTask, aggregate_clip_logits

TOP_K = 5


class _QATask(ClipBertTask):
    """Cross-entropy on clip-aggregated logits, accuracy overall and per answer type.

    Subclasses give ``forward`` (logits per question over its candidate answers) and
    ``describe`` (one readable prediction record per question).
    """

    def __init__(self, backbone, *, answer_types: Sequence[str] = (), **task_kwargs) -> None:
        super().__init__(backbone, **task_kwargs)
        self.answer_types = list(answer_types)
        self.val_acc = QAAccuracy(answer_types)
        self.test_acc = QAAccuracy(answer_types)
        # a metric, not a logged mean of means: exact across processes with uneven shards
        self.eval_loss = torch.nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_LABEL, reduction="sum")
        return losses / (labels != IGNORE_LABEL).sum().clamp(min=1)

    def candidate_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits of the answers that can be predicted (all of them by default)."""
        return logits

    def loss_weight(self, batch: VideoQABatch) -> int:
        """How many questions the batch's loss averages over (those with a gold label)."""
        return int((batch.labels != IGNORE_LABEL).sum())

    def targets(self, batch: VideoQABatch) -> torch.Tensor:
        """What the loss compares the logits with: the gold label of each question."""
        return batch.labels

    def training_step(self, batch: VideoQABatch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(self(batch), self.targets(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _eval_step(self, batch: VideoQABatch, stage: str, metric: QAAccuracy) -> None:
        logits = self(batch)
        weight = self.loss_weight(batch)
        if weight > 0:
            self.eval_loss[stage].update(self._loss(logits, self.targets(batch)), weight=weight)
        predicted = self.candidate_logits(logits).argmax(dim=-1)
        self.update_metric(metric, predicted, batch, self._broken(batch, stage))

    def update_metric(
        self, metric: QAAccuracy, predicted: torch.Tensor, batch: VideoQABatch, broken: torch.Tensor
    ) -> None:
        """Accuracy; a question on an unreadable video is counted wrong."""
        metric.update(predicted.masked_fill(broken, -1), batch.labels, batch.answer_types)

    def _broken(self, batch: VideoQABatch, stage: str) -> torch.Tensor:
        """Questions on unreadable videos: counted wrong, and counted in ``{stage}/broken``."""
        broken = batch.broken_mask()
        self.log(
            f"{stage}/broken",
            broken.sum().float(),
            reduce_fx="sum",
            sync_dist=True,
            batch_size=len(batch),
        )
        return broken

    primary_metric = "acc"  # the metric shown in the progress bar

    def _log_metric(self, stage: str, metric: QAAccuracy) -> None:
        values = metric.compute()
        self.log(f"{stage}/{self.primary_metric}", values.pop(self.primary_metric), prog_bar=True)
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()})
        metric.reset()
        if self.eval_loss[stage].update_called:
            self.log(f"{stage}/loss", self.eval_loss[stage].compute())
        self.eval_loss[stage].reset()

    def validation_step(self, batch: VideoQABatch, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        self._log_metric("val", self.val_acc)

    def test_step(self, batch: VideoQABatch, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def on_test_epoch_end(self) -> None:
        self._log_metric("test", self.test_acc)

    def predict_step(self, batch: VideoQABatch, batch_idx: int) -> list[dict]:
        scores = self.candidate_logits(self(batch)).float().softmax(dim=-1)
        top = scores.topk(min(TOP_K, scores.shape[-1]), dim=-1)
        records = []
        for i in range(len(batch)):
            record = {
                "question_id": batch.question_ids[i],
                "question": batch.questions[i],
                "answer_type": batch.answer_types[i],
                **self.describe(batch, i, top.indices[i].tolist(), top.values[i].tolist()),
                "gold": batch.answers[i],
            }
            if batch.broken and batch.broken[i] is not None:  # listed, and counted wrong
                record.update(prediction=None, top5=[], broken=batch.broken[i])
            records.append(record)
        return records

    def describe(self, batch: VideoQABatch, i: int, indices: list[int], probs: list[float]) -> dict:
        """The prediction fields of question ``i``'s record, from its top-k candidates."""
        raise NotImplementedError


class VideoQATask(_QATask):
    """Open-ended: per-clip MLP logits over the answer vocabulary, aggregated by ``score_agg``.

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
        super().__init__(backbone, answer_types=answer_types, **task_kwargs)
        self.answer_vocabulary = list(answer_vocabulary)
        # Plain lists only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters(
            {"answer_vocabulary": self.answer_vocabulary, "answer_types": self.answer_types}
        )
        num_labels = max(len(self.answer_vocabulary), min_num_labels)
        self.head = MLPClassifier(backbone.hidden_size, num_labels, dropout=classifier_dropout)

    def forward(self, batch: VideoQABatch) -> torch.Tensor:
        """Aggregated answer logits (Q, num_labels)."""
        pooled = self.backbone(
            batch.frames, batch.input_ids, batch.attention_mask, batch.visual_index
        )
        return aggregate_clip_logits(self.head(pooled), self.score_agg)

    def candidate_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, : len(self.answer_vocabulary)]  # columns past the vocabulary are padding

    def describe(self, batch: VideoQABatch, i: int, indices: list[int], probs: list[float]) -> dict:
        answers = [self.answer_vocabulary[j] for j in indices]
        return {
            "prediction": answers[0],
            "top5": [
                {"answer": a, "prob": round(p, 6)} for a, p in zip(answers, probs, strict=True)
            ],
        }


class VideoMCTask(_QATask):
    """Multiple choice: one score per ``question + " " + option`` row, softmax over the options.

    The head is the MLP with one output (the original's ``ClipBertForMultipleChoice``); the
    video's CNN features are shared by all its options.
    """

    def __init__(
        self,
        backbone,
        *,
        num_options: int = 5,
        answer_types: Sequence[str] = (),
        classifier_dropout: float = 0.1,
        **task_kwargs,
    ) -> None:
        super().__init__(backbone, answer_types=answer_types, **task_kwargs)
        self.num_options = num_options
        self.save_hyperparameters({"num_options": num_options, "answer_types": self.answer_types})
        self.head = MLPClassifier(backbone.hidden_size, 1, dropout=classifier_dropout)

    def forward(self, batch: VideoQABatch) -> torch.Tensor:
        """Aggregated option logits (Q, num_options)."""
        if batch.texts_per_question != self.num_options:
            raise ValueError(
                f"the batch has {batch.texts_per_question} texts per question; this model "
                f"scores {self.num_options} options"
            )
        pooled = self.backbone(
            batch.frames, batch.input_ids, batch.attention_mask, batch.visual_index
        )
        per_clip = group_options(self.head(pooled), self.num_options)  # (Q, N, options)
        return aggregate_clip_logits(per_clip, self.score_agg)

    def describe(self, batch: VideoQABatch, i: int, indices: list[int], probs: list[float]) -> dict:
        return {
            "options": list(batch.options[i]),
            "prediction": indices[0],
            "top5": [
                {"option": j, "prob": round(p, 6)} for j, p in zip(indices, probs, strict=True)
            ],
        }
