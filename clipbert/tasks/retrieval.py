"""Text-video retrieval (MSRVTT, DiDeMo and ActivityNet paragraphs): image-text matching in
training, every caption against every video in evaluation."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from clipbert.data.collate import PairBatch, VideoBatch, VideoQABatch
from clipbert.data.datamodule import RankingTexts
from clipbert.metrics import QAAccuracy, retrieval_metrics
from clipbert.models.heads import MLPClassifier
from clipbert.tasks.base import ClipBertTask, aggregate_clip_logits

log = logging.getLogger(__name__)

MATCH = 1  # the label of a matching pair (the original's ITM convention)


def scored_part(matrix: Tensor, text_to_video: Tensor) -> tuple[Tensor, Tensor]:
    """The videos that were scored (all, unless ``limit_*_batches`` cut the epoch short) and
    the captions of those videos, with gold indices renumbered to match."""
    scored = ~torch.isnan(matrix[0]) if len(matrix) else torch.zeros(0, dtype=torch.bool)
    if bool(scored.all()):
        return matrix, text_to_video
    log.warning("ranking %d of %d videos: the evaluation was limited", scored.sum(), len(scored))
    renumber = torch.cumsum(scored, 0) - 1
    keep = scored[text_to_video]
    return matrix[keep][:, scored], renumber[text_to_video[keep]]


class RetrievalTask(ClipBertTask):
    """A 2-way match classifier on the pooled [CLS] of each (caption, video) pair.

    Evaluation computes each video's visual tokens once, then scores caption blocks against
    it: at most ``ranking_pairs`` (caption, clip) sequences go through BERT at a time, which
    bounds memory whatever the split's size. A pair's score is p(match) after clip aggregation.

    On multiple-choice data (the MSRVTT multiple-choice test: 5 candidate captions per video)
    it answers with the caption of highest p(match), as the original's ``run_msrvtt_mc.py``.
    """

    def __init__(
        self,
        backbone,
        *,
        classifier_dropout: float = 0.1,
        ranking_pairs: int = 512,
        **task_kwargs,
    ) -> None:
        super().__init__(backbone, **task_kwargs)
        if ranking_pairs < 1:
            raise ValueError(f"ranking_pairs must be >= 1, got {ranking_pairs}")
        self.ranking_pairs = ranking_pairs
        self.head = MLPClassifier(backbone.hidden_size, 2, dropout=classifier_dropout)
        self._columns: list[tuple[Tensor, Tensor]] = []
        self.mc_acc = QAAccuracy()

    def forward(self, batch: PairBatch | VideoQABatch) -> Tensor:
        """Aggregated match logits (R, 2) of the batch's (text, video) rows."""
        pooled = self.backbone(
            batch.frames, batch.input_ids, batch.attention_mask, batch.visual_index
        )
        return aggregate_clip_logits(self.head(pooled), self.score_agg)

    def training_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        logits = self(batch)
        loss = F.cross_entropy(logits.float(), batch.labels)
        accuracy = (logits.argmax(dim=-1) == batch.labels).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("train/itm_acc", accuracy, batch_size=len(batch))
        return loss

    @torch.no_grad()
    def score_videos(self, frames: Tensor, texts: RankingTexts) -> Tensor:
        """p(match) of every caption with every video: (num_texts, V)."""
        tokens = self.backbone.video_tokens(frames)  # (V, N, tokens, H)
        num_videos, num_clips = tokens.shape[:2]
        step = max(1, self.ranking_pairs // (num_videos * num_clips))
        input_ids = texts.input_ids.to(frames.device)
        attention_mask = texts.attention_mask.to(frames.device)
        blocks = []
        for start in range(0, len(texts), step):
            ids, mask = input_ids[start : start + step], attention_mask[start : start + step]
            shape = (len(ids), num_videos, num_clips)
            hidden = self.backbone.joint(
                tokens.expand(len(ids), *tokens.shape).flatten(0, 2),
                ids[:, None, None].expand(*shape, -1).flatten(0, 2),
                mask[:, None, None].expand(*shape, -1).flatten(0, 2),
            )
            logits = self.head(self.backbone.bert.pooler(hidden)).unflatten(0, shape[:2] + (-1,))
            aggregated = aggregate_clip_logits(logits.flatten(0, 1), self.score_agg)
            blocks.append(aggregated.float().softmax(dim=-1)[:, MATCH].view(shape[:2]))
        return torch.cat(blocks)

    def _ranking_texts(self, split: str) -> RankingTexts:
        return self.trainer.datamodule.ranking_texts(split)

    def _score_step(self, batch: VideoBatch, split: str) -> None:
        scores = self.video_scores(batch, self._ranking_texts(split))
        broken = float(sum(reason is not None for reason in batch.broken))
        self.log(f"{split}/broken", broken, reduce_fx="sum", batch_size=len(batch))
        self._columns.append((batch.indices, scores))

    def video_scores(self, batch: VideoBatch, texts: RankingTexts) -> Tensor:
        """Scores of the batch's videos; an unreadable video scores -1 with every caption, below
        any probability, so it is never retrieved and its captions count as misses."""
        scores = self.score_videos(batch.frames, texts)
        broken = torch.tensor([b is not None for b in batch.broken], device=scores.device)
        if broken.any():
            scores[:, broken] = -1.0
        return scores

    def _log_ranking(self, stage: str, split: str) -> None:
        if self.trainer.sanity_checking:  # a few batches only: no complete matrix to rank
            self._columns = []
            return
        texts = self._ranking_texts(split)
        matrix, text_to_video = scored_part(
            self.gather_score_matrix(len(texts.video_ids)), texts.text_to_video
        )
        metrics = retrieval_metrics(matrix, text_to_video)
        # Every process holds the whole matrix after the gather: no further reduction.
        self.log(f"{stage}/r1_t2v", metrics.pop("r1_t2v"), prog_bar=True)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()})

    def gather_score_matrix(self, num_videos: int) -> Tensor:
        """The (num_texts, num_videos) matrix from this epoch's columns, across processes."""
        indices = torch.cat([i for i, _ in self._columns])
        scores = torch.cat([s for _, s in self._columns], dim=1)
        self._columns = []
        if self.trainer.world_size > 1:
            indices = self.all_gather(indices).flatten()
            scores = self.all_gather(scores).permute(1, 0, 2).flatten(1)
        matrix = scores.new_full((scores.shape[0], num_videos), float("nan"))
        matrix[:, indices] = scores
        return matrix.cpu()

    def option_scores(self, batch: VideoQABatch) -> Tensor:
        """p(match) of each candidate caption: (Q, options)."""
        match = self(batch).float().softmax(dim=-1)[:, MATCH]
        return match.view(len(batch), batch.texts_per_question)

    def _eval_step(self, batch: VideoBatch | VideoQABatch, split: str) -> None:
        if isinstance(batch, VideoQABatch):
            predicted = self.option_scores(batch).argmax(dim=-1)
            predicted = predicted.masked_fill(batch.broken_mask(), -1)  # counted wrong
            self.mc_acc.update(predicted, batch.labels, batch.answer_types)
        else:
            self._score_step(batch, split)

    def _log_eval(self, stage: str) -> None:
        if self.mc_acc.update_called:
            self.log(f"{stage}/acc", self.mc_acc.compute()["acc"], prog_bar=True)
            self.mc_acc.reset()
        else:
            self._log_ranking(stage, stage)

    def validation_step(self, batch: VideoBatch | VideoQABatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def test_step(self, batch: VideoBatch | VideoQABatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def predict_step(self, batch: VideoBatch | VideoQABatch, batch_idx: int) -> dict | list[dict]:
        if isinstance(batch, VideoQABatch):
            scores = self.option_scores(batch)
            return [
                {
                    "question_id": batch.question_ids[i],
                    "question": batch.questions[i],
                    "answer_type": batch.answer_types[i],
                    "options": list(batch.options[i]),
                    "prediction": int(scores[i].argmax()),
                    "scores": [round(s, 6) for s in scores[i].tolist()],
                    "gold": batch.answers[i],
                    **({"prediction": None, "broken": batch.broken[i]} if batch.broken[i] else {}),
                }
                for i in range(len(batch))
            ]
        texts = self._ranking_texts(self.trainer.datamodule.predict_split)
        scores = self.video_scores(batch, texts)
        broken = {v: b for v, b in zip(batch.video_ids, batch.broken, strict=True) if b}
        return {"indices": batch.indices.cpu(), "scores": scores.cpu(), "broken": broken}
