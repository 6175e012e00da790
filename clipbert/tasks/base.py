"""What every ClipBERT task shares: the backbone, the optimisation recipe, the task protocol."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from clipbert.data.batches import Frames, FramesBatch, QABatch
from clipbert.data.text import TextTokenizer
from clipbert.models.backbone import ClipBertBackbone
from clipbert.models.heads import SCORE_AGGREGATIONS, aggregate_clip_logits
from clipbert.tasks.optimization import (
    MIN_LR,
    clip_grad_norm,
    global_batch_facts,
    parameter_groups,
    warmup_linear_decay,
)

log = logging.getLogger(__name__)

# How the micro-batches of an accumulated optimizer step combine: the original sums their
# gradients; "mean" is Lightning's default (the loss divided by the accumulation count).
ACCUMULATIONS = ("sum", "mean")


@dataclass
class PredictionReport:
    """What a task wrote for one predicted split: its size in words ("480 questions"), its
    metrics (empty without gold answers) and the files."""

    size: str
    metrics: dict[str, float]
    files: list[Path] = field(default_factory=list)


def question_batch(
    frames: Frames,
    texts: list[str],
    visual_index: list[int],
    texts_per_question: int,
    tokenize: TextTokenizer,
    device: torch.device,
) -> QABatch:
    """Questions about V inputs (videos or images), without gold answers: ``texts`` holds
    ``texts_per_question`` consecutive rows per question (its options, or one row), and
    ``visual_index`` the input each question is about, so an input asked several questions is
    encoded once. Everything but the frames is put on ``device``."""
    input_ids, attention_mask = tokenize(texts)
    index = torch.tensor(visual_index, dtype=torch.long, device=device)
    return QABatch(
        frames=frames,
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        visual_index=index.repeat_interleave(texts_per_question),
        labels=torch.zeros(len(visual_index), dtype=torch.long, device=device),
        texts_per_question=texts_per_question,
    )


@dataclass
class CandidateScores:
    """What a task says about a batch of Q questions (``answer``, ``choose``, ``match``): the
    probability of each question's C candidates (the answer vocabulary, the options, or the
    one caption) and what it comes from, so the Predictor can show each clip's part.

    ``logits`` are the head's scores after ``score_agg`` over the N clips of ``clip_logits``
    (Q, N, C), or (Q, N, C, 2) where a candidate's probability is a match/no-match softmax;
    ``probs`` (Q, C) is the task's probability of ``logits``, and ``clip_probs`` (Q, N, C)
    that of each clip alone. ``labels`` names the candidates when the task owns them."""

    probs: Tensor
    logits: Tensor
    clip_probs: Tensor
    clip_logits: Tensor
    labels: list[str] | None = None


class ClipBertTask(pl.LightningModule):
    """Base LightningModule: a shared backbone plus the original's optimisation recipe.

    Every task answers the same questions, so that ``predict.py``, the :class:`Predictor` and
    the result files never ask which task they hold (the task protocol):

    - ``predict_step``: what a batch's predictions are (records, or what a ranking needs); it
      also updates the ``predict`` stage's metric, the same kind that evaluation logs;
    - ``write_predictions``: the split's prediction files, ours and the original's, and its
      metrics, from those outputs and that metric;
    - ``answer`` / ``choose`` / ``match``: questions, option sets or captions about a batch of
      videos (or images), scored per clip and aggregated (:class:`CandidateScores`); a task
      that cannot score such an input raises ``TypeError``.
    """

    def __init__(
        self,
        backbone: ClipBertBackbone,
        *,
        optimizer: Callable[..., Optimizer],
        cnn_lr: float,
        cnn_weight_decay: float,
        warmup_ratio: float = 0.1,
        score_agg: str = "mean",
        accumulation: str = "sum",
    ) -> None:
        super().__init__()
        if score_agg not in SCORE_AGGREGATIONS:
            raise ValueError(f"score_agg must be one of {SCORE_AGGREGATIONS}, got '{score_agg}'")
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        if accumulation not in ACCUMULATIONS:
            raise ValueError(f"accumulation must be one of {ACCUMULATIONS}, got '{accumulation}'")
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.cnn_lr = cnn_lr
        self.cnn_weight_decay = cnn_weight_decay
        self.warmup_ratio = warmup_ratio
        self.score_agg = score_agg
        self.accumulation = accumulation
        self.batch_facts: dict | None = None  # set when the optimizer is configured
        # the FLOPs of one training batch (forward and backward), counted on the first one by
        # clipbert.callbacks.monitoring.TrainingMonitor; Lightning's ThroughputMonitor reads it
        self.flops_per_batch: int | None = None

    def on_train_batch_start(self, batch: FramesBatch, batch_idx: int) -> None:
        """Count the unreadable training videos that the loader replaced (``data/broken``)."""
        self.log(
            "data/broken",
            float(batch.replaced),
            reduce_fx="sum",
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=1,
        )

    def write_predictions(
        self, outputs: list, output_dir: Path | None, datamodule: pl.LightningDataModule
    ) -> PredictionReport:
        """Write what ``trainer.predict`` returned for one split (every process's batches, in
        the split's order) under ``output_dir``. With several processes each one calls this,
        since the metrics are computed together, and only the first gives ``output_dir``; the
        others pass None and write nothing."""
        raise NotImplementedError

    def answer(self, batch: QABatch) -> CandidateScores:
        """Open-ended QA, one text row per question: every answer of the vocabulary scored."""
        raise TypeError(f"{type(self).__name__} does not answer open questions")

    def choose(self, batch: QABatch) -> CandidateScores:
        """Multiple choice, ``texts_per_question`` option rows per question: each option's
        probability, in their order."""
        raise TypeError(f"{type(self).__name__} does not score options")

    def match(self, batch: QABatch) -> CandidateScores:
        """Retrieval, one caption row per question: p(the caption describes the input)."""
        raise TypeError(f"{type(self).__name__} does not score captions")

    def scored(
        self,
        clip_logits: Tensor,
        probabilities: Callable[[Tensor], Tensor],
        labels: list[str] | None = None,
    ) -> CandidateScores:
        """Aggregate per-clip logits (Q, N, ...) over the clips as trained (``score_agg``), and
        turn both into probabilities the task's way."""
        logits = aggregate_clip_logits(clip_logits, self.score_agg)
        return CandidateScores(
            probs=probabilities(logits),
            logits=logits,
            clip_probs=probabilities(clip_logits),
            clip_logits=clip_logits,
            labels=labels,
        )

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Sum the micro-batch gradients of an accumulated step, as the original does (it never
        divides its loss by the accumulation count); Lightning's own way, the mean, divides each
        micro-batch's loss before this hook, so ``sum`` multiplies it back. Clipping at 5.0
        then means what it meant in the original's recipes."""
        if self.accumulation == "sum":
            loss = loss * self.trainer.accumulate_grad_batches
        super().backward(loss, *args, **kwargs)

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's clipping, also for a fused optimizer (one kernel steps every parameter).

        Lightning refuses to clip for a fused optimizer because under fp16 the fused step
        unscales the gradients itself, so they are still scaled when clipping runs. In fp32 and
        bf16 nothing is scaled and clipping the gradients directly is exact; where gradients are
        scaled or sharded the optimizer is built unfused (``configure_optimizers``).
        """
        if not gradient_clip_val or not getattr(optimizer, "_step_supports_amp_scaling", False):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            clip_grad_norm(params, gradient_clip_val)

    def _unfused_if_needed(self) -> dict[str, bool]:
        """``fused=False`` for a fused optimizer under fp16 loss scaling or FSDP, where Lightning
        must unscale or gather the gradients itself before clipping them; nothing otherwise."""
        if not getattr(self.optimizer_factory, "keywords", {}).get("fused"):
            return {}
        precision, strategy = str(self.trainer.precision), type(self.trainer.strategy).__name__
        if not (precision.startswith("16") or "FSDP" in strategy):
            return {}
        log.info("precision %s with %s: the optimizer runs unfused", precision, strategy)
        return {"fused": False}

    def configure_optimizers(self) -> dict:
        groups = parameter_groups(
            self.named_parameters(), cnn_lr=self.cnn_lr, cnn_weight_decay=self.cnn_weight_decay
        )
        optimizer = self.optimizer_factory(groups, **self._unfused_if_needed())
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = math.floor(self.warmup_ratio * total)
        self.batch_facts = global_batch_facts(self.trainer, total, warmup)
        log.info(
            "global batch %(global_batch_size)s videos (%(per_device_batch_size)s per device x "
            "%(world_size)s processes x %(accumulate_grad_batches)s accumulated); "
            "%(optimizer_steps)s optimizer steps, %(warmup_steps)s of warm-up",
            self.batch_facts,
        )
        for logger in self.loggers:
            logger.log_hyperparams(self.batch_facts)

        def schedule_for(base_lr: float) -> Callable[[int], float]:
            floor = MIN_LR / base_lr if base_lr > 0 else 0.0
            return lambda step: max(warmup_linear_decay(step + 1, warmup, total), floor)

        scheduler = LambdaLR(optimizer, [schedule_for(g["lr"]) for g in optimizer.param_groups])
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"},
        }
