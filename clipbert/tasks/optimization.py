"""The original's optimisation recipe: parameter groups (CNN vs transformer, decay vs not),
warm-up then linear decay, gradient clipping, and the batch the optimizer really sees."""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl
import torch
from torch import nn

CNN_PREFIXES = ("backbone.cnn.", "backbone.grid_encoder.")
MIN_LR = 1e-8


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
