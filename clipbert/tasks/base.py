"""What every ClipBERT task shares: clip aggregation, optimizer groups, the lr schedule."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from clipbert.data.collate import FramesBatch
from clipbert.models.backbone import ClipBertBackbone

SCORE_AGGREGATIONS = ("mean", "max", "lse")
CNN_PREFIXES = ("backbone.cnn.", "backbone.grid_encoder.")
MIN_LR = 1e-8

log = logging.getLogger(__name__)


def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` without its pass over every gradient when the norm is
    within ``max_norm``: torch then multiplies each by exactly 1.0, which for a 135 M-parameter
    model costs a read and a write of 540 MB per step on the CPU. On an accelerator the pass is
    cheap and the test would make the host wait for the device, so torch's way is kept there.
    Returns the total norm, as torch does."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = nn.utils.get_total_norm(grads)
    # torch's scale is max_norm / (norm + 1e-6) clamped to 1: below 1 (or NaN) it must run
    if norm.device.type != "cpu" or not norm + 1e-6 <= max_norm:
        nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


def aggregate_clip_logits(logits: torch.Tensor, how: str) -> torch.Tensor:
    """Combine per-clip logits (E, N, C) into one score per text (E, C).

    ``lse`` (logsumexp over clips) followed by cross-entropy is exactly the original's lse
    training loss, so one code path serves training and inference.
    """
    if how == "mean":
        return logits.mean(dim=1)
    if how == "max":
        return logits.max(dim=1).values
    if how == "lse":
        return logits.logsumexp(dim=1)
    raise ValueError(f"score_agg must be one of {SCORE_AGGREGATIONS}, got '{how}'")


def warmup_linear_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """The original's schedule: linear warmup, then linear decay to 0 at ``total_steps``.

    ``step`` counts optimizer steps from 1, as the original increments its step before
    setting the learning rate.
    """
    if step < warmup_steps:
        return step / warmup_steps
    return max(total_steps - step, 0) / max(total_steps - warmup_steps, 1)


def is_no_decay(name: str) -> bool:
    """Biases and LayerNorm parameters are not weight-decayed (the original's rule)."""
    return "bias" in name or "LayerNorm" in name


def parameter_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    *,
    cnn_lr: float,
    cnn_weight_decay: float,
) -> list[dict]:
    """Split trainable parameters into transformer/CNN x decay/no-decay groups.

    Transformer groups take the optimizer's own lr and weight decay; CNN groups (ResNet and
    grid encoder) take ``cnn_lr`` and ``cnn_weight_decay``. Frozen parameters are left out.
    """
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        key = (name.startswith(CNN_PREFIXES), is_no_decay(name))
        buckets.setdefault(key, []).append(param)
    groups = []
    for (is_cnn, no_decay), params in sorted(buckets.items()):
        group: dict = {"params": params, "name": f"{'cnn' if is_cnn else 'transformer'}"}
        group["name"] += "_no_decay" if no_decay else ""
        if is_cnn:
            group["lr"] = cnn_lr
            group["weight_decay"] = cnn_weight_decay
        if no_decay:
            group["weight_decay"] = 0.0
        groups.append(group)
    return groups


def global_batch_facts(trainer: pl.Trainer, total_steps: int, warmup_steps: int) -> dict:
    """The batch the optimizer really sees (videos per device x processes over all nodes x
    accumulation) and the schedule's length, as logged and stored in checkpoints."""
    per_device = getattr(trainer.datamodule, "batch_size", None)
    processes, accumulated = trainer.world_size, trainer.accumulate_grad_batches
    return {
        "global_batch_size": None if per_device is None else per_device * processes * accumulated,
        "per_device_batch_size": per_device,
        "world_size": processes,
        "accumulate_grad_batches": accumulated,
        "optimizer_steps": total_steps,
        "warmup_steps": warmup_steps,
    }


class ClipBertTask(pl.LightningModule):
    """Base LightningModule: a shared backbone plus the original's optimisation recipe."""

    def __init__(
        self,
        backbone: ClipBertBackbone,
        *,
        optimizer: Callable[..., Optimizer],
        cnn_lr: float,
        cnn_weight_decay: float,
        warmup_ratio: float = 0.1,
        score_agg: str = "mean",
    ) -> None:
        super().__init__()
        if score_agg not in SCORE_AGGREGATIONS:
            raise ValueError(f"score_agg must be one of {SCORE_AGGREGATIONS}, got '{score_agg}'")
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.cnn_lr = cnn_lr
        self.cnn_weight_decay = cnn_weight_decay
        self.warmup_ratio = warmup_ratio
        self.score_agg = score_agg
        self.batch_facts: dict | None = None  # set when the optimizer is configured

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

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's clipping, also for a fused optimizer (one kernel steps every parameter).

        Lightning refuses to clip for a fused optimizer because under fp16 the fused step
        unscales the gradients itself, so they are still scaled when clipping runs. In fp32 and
        bf16 nothing is scaled and clipping the gradients directly is exact.
        """
        if not gradient_clip_val or not getattr(optimizer, "_step_supports_amp_scaling", False):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        precision = str(self.trainer.precision)
        if precision.startswith("16") or "FSDP" in type(self.trainer.strategy).__name__:
            raise ValueError(
                f"gradient clipping with a fused optimizer does not work with precision "
                f"{precision} and strategy {type(self.trainer.strategy).__name__}; set "
                "task.module.optimizer.fused=false (or trainer.gradient_clip_val=null)"
            )
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            clip_grad_norm(params, gradient_clip_val)

    def configure_optimizers(self) -> dict:
        groups = parameter_groups(
            self.named_parameters(), cnn_lr=self.cnn_lr, cnn_weight_decay=self.cnn_weight_decay
        )
        optimizer = self.optimizer_factory(groups)
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
