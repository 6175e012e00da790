"""What the default trainer's ``auto`` settings become on this machine, said in the log.

``python train.py task=msrvtt_qa trainer.devices=8`` must mean eight GPUs in mixed precision
where there are GPUs, so the default trainer (``configs/trainer/auto.yaml``) leaves the
accelerator to Lightning and its precision to :func:`automatic_precision`: Lightning has no
``precision: auto``, and fp32 on a GPU would waste most of it. With more than one device
Lightning's ``strategy: auto`` is DDP, one process per device.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

AUTO = "auto"
GPU_ACCELERATORS = ("gpu", "cuda")


def runs_on_gpu(accelerator: str) -> bool:
    """Whether Lightning will put this accelerator setting on CUDA devices."""
    if accelerator == AUTO:
        return torch.cuda.is_available() and torch.cuda.device_count() > 0
    return accelerator in GPU_ACCELERATORS


def torch_device(accelerator: str) -> str:
    """The torch device an accelerator setting (cpu | gpu | cuda | auto) means here."""
    return "cuda" if runs_on_gpu(accelerator) else "cpu"


def from_every_process(value: object) -> list:
    """``value`` of every process of a distributed run, in rank order; alone, ``[value]``.
    For what each process of a prediction collected over its own part of the split."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def automatic_precision(accelerator: str) -> str:
    """bf16 autocast on GPUs that have it, fp16 autocast (with loss scaling) on older ones,
    fp32 on the CPU, where the paper recipes' models gain little from bf16."""
    if not runs_on_gpu(accelerator):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def resolve_precision(trainer_cfg: DictConfig) -> None:
    """Replace ``precision: auto`` in place, so the recorded config says what ran."""
    if str(trainer_cfg.get("precision")) != AUTO:
        return
    with open_dict(trainer_cfg):
        trainer_cfg.precision = automatic_precision(str(trainer_cfg.get("accelerator", AUTO)))


def describe_devices(trainer: pl.Trainer) -> str:
    """One line on where training runs: device kind and count, processes, strategy, precision."""
    kind = "GPU" if trainer.accelerator.__class__.__name__ == "CUDAAccelerator" else "CPU"
    devices = f"{trainer.num_devices} {kind}{'s' if trainer.num_devices > 1 else ''}"
    if trainer.num_nodes > 1:
        devices += f" on each of {trainer.num_nodes} nodes"
    line = (
        f"training on {devices}: {trainer.world_size} process(es), "
        f"{type(trainer.strategy).__name__}, precision {trainer.precision}"
    )
    if kind == "CPU" and trainer.world_size > 1:
        line += (
            "; no GPU was found, so these are CPU processes (DDP over gloo): set "
            "trainer.devices=1 for one process, or run where GPUs are visible"
        )
    return line
