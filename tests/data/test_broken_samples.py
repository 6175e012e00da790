"""Unreadable samples in training: replaced by another, counted, logged as ``data/broken``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from torch.utils.data import Dataset

from clipbert.cli.train import train
from clipbert.data.datasets import ReplaceBroken
from clipbert.data.decoding import DecodeError
from clipbert.data.shards import SHARD_RECORD
from clipbert.demo import DemoPaths


class _Flaky(Dataset):
    def __init__(self, broken: set[int], size: int = 6) -> None:
        self.broken = broken
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if index in self.broken:
            raise DecodeError(f"video {index}: could not decode")
        return {"index": index}


def test_a_broken_item_is_replaced_and_counted() -> None:
    dataset = ReplaceBroken(_Flaky(broken={1, 2}))
    assert dataset[0, 7] == {"index": 0, "replaced": 0, "seed": 7}  # its seed, for batching
    replacements = set()
    for seed in range(20):
        item = dataset[1, seed]
        assert item["index"] not in {1, 2} and item["replaced"] >= 1
        assert dataset[1, seed] == item  # the seed decides the replacement
        replacements.add(item["index"])
    assert len(replacements) > 1


def test_reading_an_item_leaves_the_random_stream_alone() -> None:
    dataset = ReplaceBroken(_Flaky(broken={1, 2}))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    dataset[1, 7]
    assert torch.equal(torch.rand(3), expected)


def test_many_failures_in_a_row_stop_the_run() -> None:
    dataset = ReplaceBroken(_Flaky(broken=set(range(6))), attempts=3)
    with pytest.raises(RuntimeError, match="3 training samples in a row.*video"):
        dataset[0, 0]


def test_training_logs_the_replaced_videos(train_config, demo_root: Path, tmp_path: Path) -> None:
    demo = DemoPaths.under(demo_root)
    store = tmp_path / "videos"  # a folder store: the demo's videos, two of them unreadable
    store.mkdir()
    for video in demo.raw.glob("*.mp4"):
        (store / video.name).write_bytes(video.read_bytes())
    for name in ("demo_train_0000.mp4", "demo_train_0001.mp4"):
        (store / name).write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real video")
    metrics = train(train_config(f"task.datamodule.vis_db={store}", "test=false"))
    assert metrics["data/broken"] >= 2  # each read once per epoch; a replacement may be broken too
    with pytest.raises(InstantiationException, match="broken_retries must be >= 1"):
        train(train_config("+task.datamodule.broken_retries=0"))


def test_a_truncated_shard_is_counted_broken_in_training(
    train_config, demo_shards: tuple[Path, str], tmp_path: Path
) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(demo_shards[0], shards)
    record = json.loads((shards / SHARD_RECORD).read_text())
    start = 0
    for shard in record["shards"]:  # the shard holding the first training video
        keys = record["keys"][start : start + shard["entries"]]
        start += shard["entries"]
        if "demo_train_0000" in keys:
            break
    data = (shards / shard["file"]).read_bytes()
    (shards / shard["file"]).write_bytes(data[: len(data) // 4])
    metrics = train(train_config(f"task.datamodule.vis_db={shards}", "test=false"))
    assert metrics["data/broken"] >= 1
