"""Text-video retrieval (MSRVTT, DiDeMo and ActivityNet paragraphs): image-text matching in
training, every caption against every video in evaluation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.models.bert.modeling_bert import BertLMPredictionHead

from clipbert.data.batches import PairBatch, QABatch, VideoBatch
from clipbert.data.datamodule import RankingTexts
from clipbert.metrics import GroupedMean, ScoreColumns, qa_hits, retrieval_metrics
from clipbert.models.heads import IGNORE_INDEX, MLPClassifier, aggregate_clip_logits, tie_mlm_head
from clipbert.tasks.base import CandidateScores, ClipBertTask, PredictionReport
from clipbert.tasks.results import (
    original_qa_result,
    write_json,
    write_qa_results,
    write_ranking_results,
)

log = logging.getLogger(__name__)

MATCH = 1  # the label of a matching pair (the original's ITM convention)
STAGES = ("val", "test", "predict")


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


def match_probability(logits: Tensor) -> Tensor:
    """p(match) of (..., 2) match logits: the softmax of the pair, as trained."""
    return logits.float().softmax(dim=-1)[..., MATCH]


def sample_hard_negatives(log_odds: Tensor, allowed: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Draw k distinct negative captions per video with probability softmax(log_odds) over the
    allowed ones. log_odds and allowed are (V, captions); a video with fewer than k allowed
    captions gets none. Returns (video, caption) index pairs, each (pairs,)."""
    weights = log_odds.float().masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    rows = allowed.sum(dim=1) >= k
    if not bool(rows.any()):
        return allowed.new_zeros(0, dtype=torch.long), allowed.new_zeros(0, dtype=torch.long)
    captions = torch.multinomial(weights[rows], k)
    videos = rows.nonzero()[:, 0].repeat_interleave(k)
    return videos, captions.flatten()


class RetrievalTask(ClipBertTask):
    """A 2-way match classifier on the pooled [CLS] of each (caption, video) pair.

    Evaluation computes each video's visual tokens once, then scores caption blocks against
    it: at most ``ranking_pairs`` (caption, clip) sequences go through BERT at a time, which
    bounds memory whatever the split's size. A pair's score is p(match) after clip aggregation.

    On multiple-choice data (the MSRVTT multiple-choice test: 5 candidate captions per video)
    it answers with the caption of highest p(match), as the original's ``run_msrvtt_mc.py``.

    Training uses the loader's random negatives, as the original. ``hard_negatives`` > 0 adds,
    for each video, that many negatives mined from the other videos' captions in the batch:
    drawn with probability softmax(match log-odds) under the current model (as ALBEF mines its
    ITM negatives), so they are the captions the model confuses with the right one. Random
    negatives seldom differ from the positive in one detail only, so a model trained on them
    alone learns to check one or two cues and ranks poorly; mining costs one no-grad pass over
    every (caption, video) pair of the batch.

    ``mlm_weight`` > 0 adds the original pre-training's masked-language-model loss on the
    matching captions (masked by the loader: ``datamodule.mlm_probability``), through an MLM
    head tied to the word embeddings. Predicting a masked word from the video teaches what
    each word looks like directly, which image-text matching alone teaches slowly: the
    original never trains retrieval from scratch, it starts from MLM + ITM pre-training.
    """

    def __init__(
        self,
        backbone,
        *,
        classifier_dropout: float = 0.1,
        ranking_pairs: int = 512,
        hard_negatives: int = 0,
        mlm_weight: float = 0.0,
        **task_kwargs,
    ) -> None:
        super().__init__(backbone, **task_kwargs)
        if ranking_pairs < 1:
            raise ValueError(f"ranking_pairs must be >= 1, got {ranking_pairs}")
        if hard_negatives < 0:
            raise ValueError(f"hard_negatives must be >= 0 (0: the original), got {hard_negatives}")
        if mlm_weight < 0:
            raise ValueError(f"mlm_weight must be >= 0 (0: no MLM loss), got {mlm_weight}")
        self.ranking_pairs = ranking_pairs
        self.hard_negatives = hard_negatives
        self.mlm_weight = mlm_weight
        bert = backbone.bert
        self.mlm_head = (
            tie_mlm_head(
                BertLMPredictionHead(bert.config), bert.embeddings.word_embeddings, bert.config
            )
            if mlm_weight > 0
            else None
        )
        self.head = MLPClassifier(backbone.hidden_size, 2, dropout=classifier_dropout)
        # every caption x video score, gathered across processes for ranking
        self.score_columns = torch.nn.ModuleDict({stage: ScoreColumns() for stage in STAGES})
        # the MSRVTT multiple-choice test: the option with the highest p(match)
        self.mc_accuracy = torch.nn.ModuleDict({stage: GroupedMean("acc") for stage in STAGES})

    def clip_logits(self, batch: PairBatch | QABatch) -> Tensor:
        """Match logits of each clip (R, N, 2) of the batch's (text, video) rows."""
        pooled = self.backbone(
            batch.frames, batch.input_ids, batch.attention_mask, batch.visual_index
        )
        return self.head(pooled)

    def forward(self, batch: PairBatch | QABatch) -> Tensor:
        """Aggregated match logits (R, 2) of the batch's (text, video) rows."""
        return aggregate_clip_logits(self.clip_logits(batch), self.score_agg)

    def training_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        if (self.mlm_head is None) != (batch.mlm_input_ids is None):
            raise ValueError(
                "the MLM loss needs both task.module.mlm_weight > 0 and "
                "task.datamodule.mlm_probability > 0; set both or neither"
            )
        grid = self.backbone.encode_frames(batch.frames)  # one CNN pass for every loss
        pairs = (batch.input_ids, batch.attention_mask, batch.visual_index)
        labels = batch.labels
        if self.hard_negatives:
            pairs, labels = self._add_hard_negatives(grid, batch)
        hidden = self.backbone.encode_grid(grid, *pairs)
        logits = aggregate_clip_logits(self.head(self.backbone.pool(hidden)), self.score_agg)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        self.log("train/itm_loss", loss, batch_size=len(labels))
        self.log("train/itm_acc", accuracy, batch_size=len(labels))
        if self.mlm_head is not None:
            mlm_loss = self._mlm_loss(grid, batch)
            self.log("train/mlm_loss", mlm_loss, batch_size=len(batch.mlm_labels))
            loss = loss + self.mlm_weight * mlm_loss
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def _mlm_loss(self, grid: Tensor, batch: PairBatch) -> Tensor:
        """Cross-entropy of the masked words of the matching captions, over every clip."""
        positive = batch.labels == MATCH
        hidden = self.backbone.encode_grid(
            grid, batch.mlm_input_ids, batch.attention_mask[positive], batch.visual_index[positive]
        )
        text_length = batch.mlm_input_ids.shape[1]
        logits = self.mlm_head(hidden[:, :, :text_length])  # (E, N, L, vocab)
        targets = batch.mlm_labels[:, None].expand(-1, hidden.shape[1], -1)
        masked = targets != IGNORE_INDEX
        if not bool(masked.any()):  # a batch of very short captions may mask nothing
            return logits.sum() * 0.0
        return F.cross_entropy(logits[masked].float(), targets[masked])

    def pair_logits(
        self, tokens: Tensor, input_ids: Tensor, attention_mask: Tensor, visual_index: Tensor
    ) -> Tensor:
        """Aggregated match logits (E, 2) of text e with video ``visual_index[e]``, given each
        video's visual tokens (V, N, tokens, H) computed once."""
        num_clips = tokens.shape[1]
        hidden = self.backbone.joint(
            tokens[visual_index].flatten(0, 1),
            input_ids.repeat_interleave(num_clips, dim=0),
            attention_mask.repeat_interleave(num_clips, dim=0),
        )
        logits = self.head(self.backbone.pool(hidden))
        return aggregate_clip_logits(
            logits.unflatten(0, (len(input_ids), num_clips)), self.score_agg
        )

    def grid_logits(self, tokens: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Aggregated match logits (texts, V, 2) of every text with every video."""
        num_texts, num_videos = len(input_ids), tokens.shape[0]
        videos = torch.arange(num_videos, device=tokens.device).repeat(num_texts)
        logits = self.pair_logits(
            tokens,
            input_ids.repeat_interleave(num_videos, dim=0),
            attention_mask.repeat_interleave(num_videos, dim=0),
            videos,
        )
        return logits.unflatten(0, (num_texts, num_videos))

    def _add_hard_negatives(
        self, grid: Tensor, batch: PairBatch
    ) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
        """The batch's (input_ids, attention_mask, visual_index) and labels, followed by the
        mined negatives."""
        positive = batch.labels == MATCH
        ids, mask = batch.input_ids[positive], batch.attention_mask[positive]
        owners = [batch.video_ids[v] for v in batch.visual_index[positive].tolist()]
        # never a caption of the same video (a video may be in the batch with two captions)
        allowed = torch.tensor(
            [[video != owner for owner in owners] for video in batch.video_ids],
            device=grid.device,
        )  # (V, captions)
        with torch.no_grad():
            tokens = self.backbone.visual_embeddings(grid.flatten(0, 1)).unflatten(
                0, grid.shape[:2]
            )
            log_odds = self.grid_logits(tokens, ids, mask).float().diff(dim=-1)[..., 0]
        videos, chosen = sample_hard_negatives(log_odds.t(), allowed, self.hard_negatives)
        pairs = (
            torch.cat([batch.input_ids, ids[chosen]]),
            torch.cat([batch.attention_mask, mask[chosen]]),
            torch.cat([batch.visual_index, videos]),
        )
        return pairs, torch.cat([batch.labels, batch.labels.new_zeros(len(chosen))])

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
            block = slice(start, start + step)
            logits = self.grid_logits(tokens, input_ids[block], attention_mask[block])
            blocks.append(match_probability(logits))
        return torch.cat(blocks)

    def _ranking_texts(self, split: str) -> RankingTexts:
        return self.trainer.datamodule.ranking_texts(split)

    def video_scores(self, batch: VideoBatch, texts: RankingTexts) -> Tensor:
        """Scores of the batch's videos; an unreadable video scores -1 with every caption, below
        any probability, so it is never retrieved and its captions count as misses."""
        scores = self.score_videos(batch.frames, texts)
        broken = torch.tensor([b is not None for b in batch.broken], device=scores.device)
        if broken.any():
            scores[:, broken] = -1.0
        return scores

    def option_scores(self, batch: QABatch) -> Tensor:
        """p(match) of each candidate caption: (Q, options)."""
        return match_probability(self(batch)).view(len(batch), batch.texts_per_question)

    def _choose_options(self, batch: QABatch, stage: str) -> Tensor:
        """The multiple-choice test's option scores, the stage's accuracy updated (a question on
        an unreadable video counted wrong)."""
        scores = self.option_scores(batch)
        predicted = scores.argmax(dim=-1).masked_fill(batch.broken_mask(), -1)
        self.mc_accuracy[stage].update(qa_hits(predicted, batch.labels), batch.answer_types)
        return scores

    def _eval_step(self, batch: VideoBatch | QABatch, stage: str) -> None:
        if isinstance(batch, QABatch):
            self._choose_options(batch, stage)
            return
        scores = self.video_scores(batch, self._ranking_texts(stage))
        broken = float(sum(reason is not None for reason in batch.broken))
        self.log(f"{stage}/broken", broken, reduce_fx="sum", sync_dist=True, batch_size=len(batch))
        self.score_columns[stage].update(batch.indices, scores)

    def _log_eval(self, stage: str) -> None:
        if self.mc_accuracy[stage].update_called:
            self.log(f"{stage}/acc", self.mc_accuracy[stage].compute()["acc"], prog_bar=True)
            self.mc_accuracy[stage].reset()
        elif self.trainer.sanity_checking:  # a few batches only: no complete matrix to rank
            self.score_columns[stage].reset()
        else:
            metrics = self.ranking_metrics(stage, self._ranking_texts(stage))[1]
            # Every process holds the whole matrix after the gather: no further reduction.
            self.log(f"{stage}/r1_t2v", metrics.pop("r1_t2v"), prog_bar=True)
            self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()})

    def ranking_metrics(self, stage: str, texts: RankingTexts) -> tuple[Tensor, dict]:
        """The stage's caption x video score matrix, gathered across processes, and its ranking
        metrics over the videos that were scored (all, unless the evaluation was limited)."""
        columns = self.score_columns[stage]
        matrix = columns.matrix(len(texts), len(texts.video_ids))
        columns.reset()
        return matrix, retrieval_metrics(*scored_part(matrix, texts.text_to_video))

    def validation_step(self, batch: VideoBatch | QABatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def test_step(self, batch: VideoBatch | QABatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def on_predict_epoch_start(self) -> None:
        self.score_columns["predict"].reset()
        self.mc_accuracy["predict"].reset()

    def predict_step(self, batch: VideoBatch | QABatch, batch_idx: int) -> list[dict]:
        """Ranking: the batch's videos are scored against every caption (kept for
        ``write_predictions``); the records are its unreadable videos. The multiple-choice
        test: one record per question, each option's p(match)."""
        if isinstance(batch, VideoBatch):
            split = self.trainer.datamodule.predict_split
            self.score_columns["predict"].update(
                batch.indices, self.video_scores(batch, self._ranking_texts(split))
            )
            return [
                {"video_id": video, "broken": reason}
                for video, reason in zip(batch.video_ids, batch.broken, strict=True)
                if reason
            ]
        scores = self._choose_options(batch, "predict")
        return [
            {
                "question_id": batch.question_ids[i],
                "video_id": batch.question_video_id(i),
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

    def write_predictions(
        self, outputs: list, output_dir: Path | None, datamodule: pl.LightningDataModule
    ) -> PredictionReport:
        records = [record for batch in outputs for record in batch]
        if self.mc_accuracy["predict"].update_called:
            return self._write_multiple_choice(records, output_dir)
        texts = datamodule.ranking_texts(datamodule.predict_split)
        matrix, metrics = self.ranking_metrics("predict", texts)
        broken = {r["video_id"]: r["broken"] for r in records}
        metrics["broken"] = len(broken)
        files = (
            []
            if output_dir is None
            else write_ranking_results(matrix, metrics, broken, output_dir, texts)
        )
        return PredictionReport(
            f"{len(texts)} captions x {len(texts.video_ids)} videos", metrics, files
        )

    def _write_multiple_choice(
        self, records: list[dict], output_dir: Path | None
    ) -> PredictionReport:
        """Our QA files, and the original's run_msrvtt_mc.py files: ``{qid: option}`` and the
        accuracy as text."""
        original = [original_qa_result(r, r["prediction"]) for r in records]
        metrics, files = write_qa_results(
            records, output_dir, self.mc_accuracy["predict"], original
        )
        if output_dir is None:
            return PredictionReport(f"{len(records)} questions", metrics, files)
        choices = {str(r["question_id"]): r["prediction"] for r in records}
        files.append(write_json(output_dir / "mc_test_results.json", choices))
        if "acc" in metrics:
            accuracy = {"mc_accuracy": f"{100 * metrics['acc']:.2f}"}
            files.append(write_json(output_dir / "mc_test_scores.json", accuracy))
        return PredictionReport(f"{len(records)} questions", metrics, files)

    @torch.no_grad()
    def choose(self, batch: QABatch) -> CandidateScores:
        """Each option row scored as a caption (its p(match)), as the MSRVTT multiple-choice
        test; the logits are (Q, N, options, 2): no match, match."""
        rows = self.clip_logits(batch)  # (Q * options, N, 2)
        per_question = rows.unflatten(0, (len(batch), batch.texts_per_question)).transpose(1, 2)
        return self.scored(per_question, match_probability)

    @torch.no_grad()
    def match(self, batch: QABatch) -> CandidateScores:
        return self.choose(batch)
