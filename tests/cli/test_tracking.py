"""Experiment tracking: wandb offline by default (no network, no key), the config and metrics in
its run folder; the training monitor's metrics in every logger."""

from __future__ import annotations

import csv
import ipaddress
import socket
from pathlib import Path

import pytest
import wandb

from clipbert.cli.train import train


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list:
    """Refuse connections from this process to anything but this machine."""
    attempts: list = []
    connect = socket.socket.connect

    def guarded(self: socket.socket, address) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                attempts.append(address)
                raise OSError(f"network access in a test: {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


def test_wandb_is_offline_by_default_and_keeps_config_and_metrics(
    train_config, no_network: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = train_config(
        "logger=wandb",
        "trainer.log_every_n_steps=1",
        "callbacks.throughput.window_size=2",
        "test=false",
    )
    train(cfg)
    # run.finish() can return before wandb's service has flushed the run file; the process's
    # exit does this in a real run, teardown does it here
    wandb.teardown()
    runs = list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "an offline run folder"
    (record,) = runs[0].glob("run-*.wandb")
    data = record.read_bytes()  # protobuf records: names and string values appear verbatim
    for config_entry in (b"image_size", b"demo_video_qa", b"global_batch_size"):
        assert config_entry in data, config_entry
    for metric in (b"train/loss", b"val/acc", b"lr/transformer", b"train/device/samples_per_sec"):
        assert metric in data, metric
    assert no_network == []


def test_every_run_logs_throughput_data_wait_memory_and_gradient_norm(train_config) -> None:
    cfg = train_config(
        "trainer.log_every_n_steps=1",
        "trainer.accumulate_grad_batches=2",
        "callbacks.throughput.window_size=2",
        "test=false",
    )
    train(cfg)
    with (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))

    def values(key: str) -> list[float]:
        return [float(row[key]) for row in rows if row.get(key)]

    # Lightning's ThroughputMonitor over the last 2 batches, once a gradient accumulation ends
    assert (
        values("train/device/samples_per_sec") and min(values("train/device/samples_per_sec")) > 0
    )
    # the FLOPs of a batch, counted on the first one, make the FLOP rate (MFU needs a known GPU)
    assert values("train/device/flops_per_sec") and min(values("train/device/flops_per_sec")) > 0
    assert all(0.0 <= v < 1.0 for v in values("train/data_wait_fraction"))
    assert min(values("train/peak_memory_mb")) > 50  # this process's resident peak, in MiB
    assert values("train/grad_norm") and min(values("train/grad_norm")) > 0
    hparams = (Path(cfg.paths.output_dir) / "csv" / "hparams.yaml").read_text()
    # 24 videos, 8 per batch, 2 batches per optimizer step: 3 batches make 2 steps in one epoch
    assert "global_batch_size: 16" in hparams and "optimizer_steps: 2" in hparams
    assert "image_size:" in hparams  # the resolved config


def test_csv_and_tensorboard_together(train_config) -> None:
    cfg = train_config("logger=[csv,tensorboard]", "trainer.log_every_n_steps=1", "test=false")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    assert (run / "csv" / "metrics.csv").is_file()
    (events,) = (run / "tensorboard").glob("events.out.tfevents.*")
    assert b"train/loss" in events.read_bytes() and b"val/acc" in events.read_bytes()
