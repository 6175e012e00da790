"""The default trainer on machines with and without GPUs: the headline command
`python train.py task=msrvtt_qa trainer.devices=8` is 8-GPU DDP in mixed precision where GPUs
exist (the GPU count is mocked here, Lightning's own resolution is real)."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from clipbert.runs.devices import automatic_precision, describe_devices, resolve_precision
from tests.helpers import compose_config


def _visible_gpus(count: int, bf16: bool = True):
    """Make torch (and so Lightning) see ``count`` CUDA devices."""
    return mock.patch.multiple(
        torch.cuda,
        is_available=mock.Mock(return_value=count > 0),
        device_count=mock.Mock(return_value=count),
        is_bf16_supported=mock.Mock(return_value=bf16),
    )


def _trainer(overrides: list[str], tmp_path: Path) -> pl.Trainer:
    cfg = compose_config("train", overrides)
    resolve_precision(cfg.trainer)
    return instantiate(cfg.trainer, default_root_dir=str(tmp_path), logger=False)


def test_headline_command_is_ddp_on_eight_gpus_in_bf16(tmp_path: Path) -> None:
    with _visible_gpus(8):
        trainer = _trainer(["task=msrvtt_qa", "trainer.devices=8"], tmp_path)
        line = describe_devices(trainer)
    assert type(trainer.accelerator).__name__ == "CUDAAccelerator"
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert (trainer.num_devices, trainer.world_size) == (8, 8)
    assert trainer.precision == "bf16-mixed"
    assert line.startswith("training on 8 GPUs: 8 process(es), DDPStrategy, precision bf16-mixed")


def test_gpus_without_bf16_get_fp16_autocast(tmp_path: Path) -> None:
    with _visible_gpus(4, bf16=False):
        trainer = _trainer(["task=msrvtt_qa", "trainer.devices=4"], tmp_path)
    assert trainer.precision == "16-mixed" and trainer.world_size == 4


def test_same_command_on_a_cpu_only_machine_runs_one_fp32_process(tmp_path: Path) -> None:
    with _visible_gpus(0):
        trainer = _trainer(["task=msrvtt_qa", "trainer.devices=1"], tmp_path)
        line = describe_devices(trainer)
    assert type(trainer.accelerator).__name__ == "CPUAccelerator"
    assert type(trainer.strategy).__name__ == "SingleDeviceStrategy"
    assert trainer.precision == "32-true"
    assert "no GPU" not in line


def test_several_cpu_processes_are_announced_as_such(tmp_path: Path) -> None:
    with _visible_gpus(0):
        trainer = _trainer(["task=msrvtt_qa", "trainer.devices=2"], tmp_path)
        line = describe_devices(trainer)
    assert trainer.world_size == 2 and trainer.precision == "32-true"
    assert "no GPU was found" in line and "trainer.devices=1" in line


@pytest.mark.parametrize(
    ("name", "gpus", "accelerator", "precision"),
    [
        ("cpu", 8, "cpu", "32-true"),
        ("gpu", 8, "gpu", "bf16-mixed"),
        ("ddp", 8, "gpu", "bf16-mixed"),
    ],
)
def test_named_trainers_keep_their_meaning(
    name: str, gpus: int, accelerator: str, precision: str
) -> None:
    with _visible_gpus(gpus):
        cfg = compose_config("train", [f"trainer={name}", "task=msrvtt_qa"]).trainer
        resolve_precision(cfg)
    assert (cfg.accelerator, cfg.precision) == (accelerator, precision)


def test_an_explicit_precision_is_kept() -> None:
    cfg = compose_config("train", ["task=msrvtt_qa", "trainer.precision=16-mixed"]).trainer
    with _visible_gpus(8):
        resolve_precision(cfg)
    assert cfg.precision == "16-mixed"
    with _visible_gpus(0):
        assert automatic_precision("gpu") == "bf16-mixed"  # asked for GPUs: mixed precision
