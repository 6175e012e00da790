"""Pre-training: masked language modelling (MLM) and image-text matching (ITM) over caption
corpora of images and videos, the original's ``ClipBertForPreTraining`` recipe."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import SumMetric

from clipbert.data.batches import PretrainBatch
from clipbert.metrics import GroupedMean
from clipbert.models.checkpoints import load_bert_pretraining_heads
from clipbert.models.heads import (
    IGNORE_INDEX,
    MLM_REDUCTIONS,
    PretrainingHeads,
    aggregate_clip_logits,
    masked_token_losses,
    reduce_mlm_loss,
)
from clipbert.tasks.base import ClipBertTask, PredictionReport

log = logging.getLogger(__name__)

EVAL_METRICS = ("mlm_loss", "mlm_acc", "itm_loss", "itm_acc")


@dataclass
class PretrainOutputs:
    """The scores of one batch: MLM over its masked tokens only, ITM over its captions."""

    mlm_scores: Tensor  # (masked tokens, vocab)
    mlm_token_losses: Tensor  # (masked tokens,)
    itm_scores: Tensor  # (captions, 2)


class PretrainTask(ClipBertTask):
    """MLM + ITM on the shared backbone, through heads with the original's names and tie
    (``transformer.cls.*``: the MLM decoder is the word-embedding matrix).

    The loss is ``mlm_weight`` x MLM + ``itm_weight`` x ITM (1:1 in the original). The MLM
    loss of a batch is reduced as ``mlm_loss_reduction`` says: ``all_positions``, the
    original's, is the mean over every text position of the batch, the unmasked ones counting
    0 (in effect the masked tokens' mean scaled by their share, about 0.1); ``masked_tokens`` is
    the usual mean over the masked tokens. Videos with several clips score each clip and
    aggregate the logits over clips (``score_agg``), as the finetuning tasks do.

    With BERT loaded from a folder, the heads start from its MLM head and its next-sentence
    head (``heads_from_bert``), as the original's do. Validation reports, over every corpus,
    MLM loss and accuracy per masked token and ITM loss and accuracy per caption, and the same
    per corpus (``val/mlm_acc_<corpus>``, ...).
    """

    def __init__(
        self,
        backbone,
        *,
        corpora: Sequence[str] = (),
        mlm_weight: float = 1.0,
        itm_weight: float = 1.0,
        mlm_loss_reduction: str = "all_positions",
        heads_from_bert: bool = True,
        **task_kwargs,
    ) -> None:
        super().__init__(backbone, **task_kwargs)
        if mlm_loss_reduction not in MLM_REDUCTIONS:
            raise ValueError(
                f"mlm_loss_reduction must be one of {MLM_REDUCTIONS}, got '{mlm_loss_reduction}'"
            )
        if mlm_weight < 0 or itm_weight < 0 or mlm_weight + itm_weight == 0:
            raise ValueError(f"weights must be >= 0, not both 0: {mlm_weight=}, {itm_weight=}")
        self.mlm_weight = mlm_weight
        self.itm_weight = itm_weight
        self.mlm_loss_reduction = mlm_loss_reduction
        bert = backbone.bert
        self.head = PretrainingHeads(bert.config, bert.embeddings.word_embeddings)
        if heads_from_bert and backbone.bert_source:
            load_bert_pretraining_heads(self.head, backbone.bert_source).log(
                log, f"pre-training heads {backbone.bert_source}"
            )
        self.eval_metrics = torch.nn.ModuleDict(
            {name: GroupedMean(name, list(corpora)) for name in EVAL_METRICS}
        )
        self.eval_broken = SumMetric()  # captions of unreadable validation videos, left out

    def forward(self, batch: PretrainBatch) -> PretrainOutputs:
        hidden = self.backbone.encode(
            batch.frames, batch.input_ids, batch.attention_mask, batch.visual_index
        )  # (captions, clips, text + visual tokens, H)
        text_length = batch.input_ids.shape[1]
        mlm_scores, token_losses = masked_token_losses(
            self.head, hidden[:, :, :text_length], batch.mlm_labels, self.score_agg
        )
        itm_scores = self.head.seq_relationship(self.backbone.pool(hidden))
        return PretrainOutputs(
            mlm_scores, token_losses, aggregate_clip_logits(itm_scores, self.score_agg)
        )

    def training_step(self, batch: PretrainBatch, batch_idx: int) -> Tensor:
        out = self(batch)
        mlm_loss = reduce_mlm_loss(
            out.mlm_token_losses, batch.mlm_labels.numel(), self.mlm_loss_reduction
        )
        itm_loss = F.cross_entropy(out.itm_scores.float(), batch.itm_labels)
        loss = self.mlm_weight * mlm_loss + self.itm_weight * itm_loss
        size = len(batch)
        self.log("train/mlm_loss", mlm_loss, batch_size=size)
        self.log("train/itm_loss", itm_loss, batch_size=size)
        itm_hits = (out.itm_scores.argmax(dim=-1) == batch.itm_labels).float()
        self.log("train/itm_acc", itm_hits.mean(), batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        return loss

    def validation_step(
        self, batch: PretrainBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Per-token and per-caption values of the captions whose video could be read."""
        broken = torch.tensor([reason is not None for reason in batch.broken])
        self.eval_broken.update(broken.sum())
        out = self(batch)
        masked = batch.mlm_labels != IGNORE_INDEX
        readable = ~broken.to(masked.device)
        token_kept = readable[:, None].expand_as(masked)[masked]
        corpus = [batch.corpus]
        mlm_hits = (out.mlm_scores.argmax(dim=-1) == batch.mlm_labels[masked]).float()
        self._update("mlm_loss", out.mlm_token_losses[token_kept], corpus)
        self._update("mlm_acc", mlm_hits[token_kept], corpus)
        itm_losses = F.cross_entropy(out.itm_scores.float(), batch.itm_labels, reduction="none")
        itm_hits = (out.itm_scores.argmax(dim=-1) == batch.itm_labels).float()
        self._update("itm_loss", itm_losses[readable], corpus)
        self._update("itm_acc", itm_hits[readable], corpus)

    def _update(self, name: str, values: Tensor, corpus: list[str]) -> None:
        self.eval_metrics[name].update(values.detach(), corpus * len(values))

    def on_validation_epoch_end(self) -> None:
        for metric in self.eval_metrics.values():
            self.log_dict({f"val/{k}": v for k, v in metric.compute().items()})
            metric.reset()
        self.log("val/broken", self.eval_broken.compute().float())
        self.eval_broken.reset()

    def predict_step(self, batch: PretrainBatch, batch_idx: int) -> None:
        raise TypeError(self._not_for_prediction())

    def write_predictions(
        self, outputs: list, output_dir: Path | None, datamodule: pl.LightningDataModule
    ) -> PredictionReport:
        raise TypeError(self._not_for_prediction())

    @staticmethod
    def _not_for_prediction() -> str:
        return (
            "a pre-trained model answers no task: finetune it first, e.g. "
            "`python train.py task=msrvtt_qa model.init_from=<this checkpoint>`"
        )
