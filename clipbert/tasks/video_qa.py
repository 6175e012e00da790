"""Video QA: open-ended (MSRVTT-QA, TGIF FrameQA, the demo) and multiple choice (TGIF Action,
Transition). Both classify, so they share loss, metrics, predictions and result files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric

from clipbert.data.batches import QABatch
from clipbert.data.datasets import IGNORE_LABEL
from clipbert.metrics import GroupedMean, qa_hits
from clipbert.models.heads import MLPClassifier, aggregate_clip_logits, group_options
from clipbert.tasks.base import CandidateScores, ClipBertTask, PredictionReport
from clipbert.tasks.results import TOP_K, original_qa_result, write_qa_results

STAGES = ("val", "test", "predict")


class QATask(ClipBertTask):
    """Cross-entropy on clip-aggregated logits; accuracy overall and per answer type.

    Subclasses give ``forward`` (logits per question over its candidate answers), ``describe``
    (the prediction fields of one question's record) and ``original_result`` (its entry in
    the original's results file).
    """

    metric_name = "acc"  # the metric shown in the progress bar, and the files' overall score

    def __init__(self, backbone, *, answer_types: Sequence[str] = (), **task_kwargs) -> None:
        super().__init__(backbone, **task_kwargs)
        self.answer_types = list(answer_types)
        self.metrics = torch.nn.ModuleDict(
            {stage: GroupedMean(self.metric_name, answer_types) for stage in STAGES}
        )
        # a metric, not a logged mean of means: exact across processes with uneven shards
        self.eval_loss = torch.nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        losses = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_LABEL, reduction="sum")
        return losses / (labels != IGNORE_LABEL).sum().clamp(min=1)

    def candidate_logits(self, logits: Tensor) -> Tensor:
        """The logits (..., C) of the answers that can be predicted (all of them by default)."""
        return logits

    def answer_probabilities(self, logits: Tensor) -> Tensor:
        """Each candidate's probability (..., C): softmax over the candidates, as trained."""
        return self.candidate_logits(logits).float().softmax(dim=-1)

    def loss_weight(self, batch: QABatch) -> int:
        """How many questions the batch's loss averages over (those with a gold label)."""
        return int((batch.labels != IGNORE_LABEL).sum())

    def targets(self, batch: QABatch) -> Tensor:
        """What the loss compares the logits with: the gold label of each question."""
        return batch.labels

    def question_scores(self, predicted: Tensor, batch: QABatch) -> Tensor:
        """What each question earns: 1 for the gold answer, else 0."""
        return qa_hits(predicted, batch.labels)

    def training_step(self, batch: QABatch, batch_idx: int) -> Tensor:
        loss = self._loss(self(batch), self.targets(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _score(self, batch: QABatch, stage: str, logits: Tensor) -> None:
        """Update the stage's metric; a question on an unreadable video earns nothing."""
        predicted = self.candidate_logits(logits).argmax(dim=-1)
        broken = self._broken(batch, stage)
        scores = self.question_scores(predicted, batch).masked_fill(broken, 0)
        self.metrics[stage].update(scores, batch.answer_types)

    def _eval_step(self, batch: QABatch, stage: str) -> None:
        logits = self(batch)
        weight = self.loss_weight(batch)
        if weight > 0:
            self.eval_loss[stage].update(self._loss(logits, self.targets(batch)), weight=weight)
        self._score(batch, stage, logits)

    def _broken(self, batch: QABatch, stage: str) -> Tensor:
        """Questions on unreadable videos: counted wrong, and counted in ``{stage}/broken``."""
        broken = batch.broken_mask()
        if stage != "predict":  # predict.py counts them in its metrics file
            self.log(
                f"{stage}/broken",
                broken.sum().float(),
                reduce_fx="sum",
                sync_dist=True,
                batch_size=len(batch),
            )
        return broken

    def _log_metric(self, stage: str) -> None:
        values = self.metrics[stage].compute()
        self.log(f"{stage}/{self.metric_name}", values.pop(self.metric_name), prog_bar=True)
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()})
        self.metrics[stage].reset()
        if self.eval_loss[stage].update_called:
            self.log(f"{stage}/loss", self.eval_loss[stage].compute())
        self.eval_loss[stage].reset()

    def validation_step(self, batch: QABatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metric("val")

    def test_step(self, batch: QABatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metric("test")

    def on_predict_epoch_start(self) -> None:
        self.metrics["predict"].reset()

    def predict_step(self, batch: QABatch, batch_idx: int) -> list[dict]:
        """One record per question: its prediction, its top candidates with probabilities and
        its gold answer; a question on an unreadable video is listed with the reason."""
        logits = self(batch)
        self._score(batch, "predict", logits)
        scores = self.answer_probabilities(logits)
        top = scores.topk(min(TOP_K, scores.shape[-1]), dim=-1)
        records = []
        for i in range(len(batch)):
            record = {
                "question_id": batch.question_ids[i],
                "video_id": batch.question_video_id(i),
                "question": batch.questions[i],
                "answer_type": batch.answer_types[i],
                **self.describe(batch, i, top.indices[i].tolist(), top.values[i].tolist()),
                "gold": batch.answers[i],
            }
            if batch.broken and batch.broken[i] is not None:  # listed, and counted wrong
                record.update(prediction=None, top5=[], broken=batch.broken[i])
            records.append(record)
        return records

    def write_predictions(
        self, outputs: list, output_dir: Path | None, datamodule: pl.LightningDataModule
    ) -> PredictionReport:
        records = [record for batch in outputs for record in batch]
        original = [self.original_result(r) for r in records]
        metrics, files = write_qa_results(records, output_dir, self.metrics["predict"], original)
        return PredictionReport(f"{len(records)} questions", metrics, files)

    def describe(self, batch: QABatch, i: int, indices: list[int], probs: list[float]) -> dict:
        """The prediction fields of question ``i``'s record, from its top-k candidates."""
        raise NotImplementedError

    def original_result(self, record: dict) -> dict:
        """A record as the original's ``results_all.json`` lists it: the predicted label."""
        return original_qa_result(record, self.original_label(record["prediction"]))

    def original_label(self, prediction: str | int | None) -> int | None:
        """The label the original writes for a prediction (its option index by default)."""
        return prediction


class VideoQATask(QATask):
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
        self._labels = {answer: i for i, answer in enumerate(self.answer_vocabulary)}
        # Plain lists only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters(
            {"answer_vocabulary": self.answer_vocabulary, "answer_types": self.answer_types}
        )
        num_labels = max(len(self.answer_vocabulary), min_num_labels)
        self.head = MLPClassifier(backbone.hidden_size, num_labels, dropout=classifier_dropout)

    def clip_logits(self, batch: QABatch) -> Tensor:
        """Answer logits of each clip (Q, N, num_labels)."""
        pooled = self.backbone(
            batch.frames, batch.input_ids, batch.attention_mask, batch.visual_index
        )
        return self.head(pooled)

    def forward(self, batch: QABatch) -> Tensor:
        """Aggregated answer logits (Q, num_labels)."""
        return aggregate_clip_logits(self.clip_logits(batch), self.score_agg)

    def candidate_logits(self, logits: Tensor) -> Tensor:
        return logits[..., : len(self.answer_vocabulary)]  # columns past the vocabulary: padding

    def describe(self, batch: QABatch, i: int, indices: list[int], probs: list[float]) -> dict:
        answers = [self.answer_vocabulary[j] for j in indices]
        return {
            "prediction": answers[0],
            "top5": [
                {"answer": a, "prob": round(p, 6)} for a, p in zip(answers, probs, strict=True)
            ],
        }

    def original_label(self, prediction: str | int | None) -> int | None:
        return self._labels.get(prediction)

    @torch.no_grad()
    def answer(self, batch: QABatch) -> CandidateScores:
        clip_logits = self.candidate_logits(self.clip_logits(batch))
        return self.scored(clip_logits, self.answer_probabilities, self.answer_vocabulary)


class VideoMCTask(QATask):
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

    def clip_logits(self, batch: QABatch) -> Tensor:
        """Option logits of each clip (Q, N, num_options)."""
        if batch.texts_per_question != self.num_options:
            raise ValueError(
                f"the batch has {batch.texts_per_question} texts per question; this model "
                f"scores {self.num_options} options"
            )
        pooled = self.backbone(
            batch.frames, batch.input_ids, batch.attention_mask, batch.visual_index
        )
        return group_options(self.head(pooled), self.num_options)

    def forward(self, batch: QABatch) -> Tensor:
        """Aggregated option logits (Q, num_options)."""
        return aggregate_clip_logits(self.clip_logits(batch), self.score_agg)

    def describe(self, batch: QABatch, i: int, indices: list[int], probs: list[float]) -> dict:
        return {
            "options": list(batch.options[i]),
            "prediction": indices[0],
            "top5": [
                {"option": j, "prob": round(p, 6)} for j, p in zip(indices, probs, strict=True)
            ],
        }

    @torch.no_grad()
    def choose(self, batch: QABatch) -> CandidateScores:
        """The rows are ``question + " " + option``, as in training."""
        if batch.texts_per_question != self.num_options:
            raise ValueError(
                f"this model scores {self.num_options} options, got {batch.texts_per_question}"
            )
        return self.scored(self.clip_logits(batch), self.answer_probabilities)
