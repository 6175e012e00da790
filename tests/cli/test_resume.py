"""A training run killed with SIGKILL mid-epoch and resumed with ``ckpt_path=last`` ends where an
uninterrupted run ends, with the same weights and results (real processes, deterministic mode):
the same batches in the same order, the same frame draws, the same optimizer state. Killed runs
reading the videos from shards (local, or from an S3 server on loopback) end like the
uninterrupted run on the LMDB, and predict from the same store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, run_script, run_train, tiny_demo_overrides

VIDEO_QA = ("demo_video_qa", 12, ("val/acc", "val/loss", "test/acc", "test/loss"))
# (task, its steps per epoch at batch size 2, the metrics both runs must end with, the store the
# killed run reads). Video QA: 24 training videos, 2 per batch. Pre-training: 48 video captions,
# 1 video (2 frames) per batch, and 24 images, 2 per batch. Slow cases run in the slow suite.
CASES = [
    pytest.param(*VIDEO_QA, "lmdb", id="demo_video_qa-lmdb"),
    pytest.param(*VIDEO_QA, "s3", id="demo_video_qa-s3"),
    pytest.param(*VIDEO_QA, "shards", id="demo_video_qa-shards", marks=pytest.mark.slow),
    pytest.param(
        "demo_pretrain",
        60,
        ("val/mlm_loss", "val/mlm_acc", "val/itm_loss", "val/itm_acc"),
        "lmdb",
        id="demo_pretrain-lmdb",
        marks=pytest.mark.slow,
    ),
]


def _train(demo_root: Path, run: Path, task: str, *extra: str) -> list[str]:
    """The overrides of both runs: 2 epochs, a mid-epoch last.ckpt every 5 steps."""
    return [
        *tiny_demo_overrides(demo_root),
        f"task={task}",
        "task.datamodule.batch_size=2",
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        "trainer.precision=32-true",
        "callbacks.step_checkpoint.every_n_train_steps=5",
        "trainer.log_every_n_steps=2",  # the CSV logger writes as it logs: there is a file to keep
        f"hydra.run.dir={run}",
        *extra,
    ]


def _store_overrides(store: str, demo_shards: tuple[Path, str], endpoint: str) -> list[str]:
    """Where the killed run reads the videos: the LMDB the demo built, or its shards."""
    local, url = demo_shards
    if store == "lmdb":
        return []
    if store == "shards":
        return [f"task.datamodule.vis_db={local}"]
    return [f"task.datamodule.vis_db={url}", f"task.datamodule.storage.endpoint_url={endpoint}"]


def _run(overrides: list[str], cwd: Path) -> None:
    result = run_train(*overrides, cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _load(checkpoint: Path) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)


def _global_step(checkpoint: Path) -> int:
    return _load(checkpoint)["global_step"]


# the reference run of each task, on the LMDB, made once for all stores
_UNINTERRUPTED: dict[str, Path] = {}


def _uninterrupted(demo_root: Path, task: str, root: Path) -> Path:
    if task not in _UNINTERRUPTED:
        whole = root / f"whole_{task}"
        _run(_train(demo_root, whole, task), root)
        _UNINTERRUPTED[task] = whole
    return _UNINTERRUPTED[task]


@pytest.mark.parametrize(("task", "steps_per_epoch", "metrics", "store"), CASES)
def test_killed_mid_epoch_and_resumed_ends_like_an_uninterrupted_run(
    demo_root: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    task: str,
    steps_per_epoch: int,
    metrics: tuple[str, ...],
    store: str,
) -> None:
    whole = _uninterrupted(demo_root, task, tmp_path_factory.getbasetemp())
    reading: list[str] = []
    if store != "lmdb":
        endpoint = request.getfixturevalue("s3_endpoint")
        reading = _store_overrides(store, request.getfixturevalue("demo_shards"), endpoint)

    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *_train(demo_root, run, task, *reading)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)  # checkpoints are renamed into place: complete
    finally:
        process.wait()
    killed_at = _global_step(last)
    assert killed_at % steps_per_epoch != 0, "the kill should land mid-epoch"
    assert not (run / "metrics.json").exists()

    _run(_train(demo_root, run, task, *reading, "ckpt_path=last"), tmp_path)
    assert _global_step(last) == _global_step(whole / "checkpoints" / "last.ckpt")
    assert _global_step(last) == 2 * steps_per_epoch
    resumed = json.loads((run / "metrics.json").read_text())
    reference = json.loads((whole / "metrics.json").read_text())
    for key in metrics:
        assert resumed[key] == reference[key], key
    weights, expected = _load(last)["state_dict"], _load(whole / "checkpoints" / "last.ckpt")
    for name, value in expected["state_dict"].items():
        assert torch.equal(weights[name], value), name
    assert (run / "csv" / "metrics.part1.csv").is_file()  # what the killed run logged is kept
    if store != "lmdb":  # predict.py reads the run's store as recorded
        result = run_script("predict.py", f"run_dir={run}", "split=test", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        (out,) = (run / "predict").iterdir()
        predicted = json.loads((out / "metrics.json").read_text())
        assert predicted["acc"] == pytest.approx(resumed["test/acc"]) and predicted["broken"] == 0
    if store == "s3":  # predict.py's storage.* replace the recorded ones
        moved = ("storage.endpoint_url=http://127.0.0.1:9", "storage.timeout_s=1")
        result = run_script("predict.py", f"run_dir={run}", *moved, cwd=tmp_path)
        assert result.returncode != 0 and "127.0.0.1:9" in result.stderr
