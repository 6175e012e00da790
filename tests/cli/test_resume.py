"""A training run killed with SIGKILL mid-epoch and resumed with ``ckpt_path=last`` ends where an
uninterrupted run ends, with the same weights and results (real processes, deterministic mode):
the same batches in the same order, the same frame draws, the same optimizer state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.helpers import REPO, run_train, tiny_demo_overrides

STEPS_PER_EPOCH = 12  # 24 training videos, 2 per batch


def _train(demo_root: Path, run: Path, *extra: str) -> list[str]:
    """The overrides of both runs: 2 epochs of 12 steps, a mid-epoch last.ckpt every 5."""
    return [
        *tiny_demo_overrides(demo_root),
        "task.datamodule.batch_size=2",
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        "trainer.precision=32-true",
        "callbacks.step_checkpoint.every_n_train_steps=5",
        "trainer.log_every_n_steps=2",  # the CSV logger writes as it logs: there is a file to keep
        f"hydra.run.dir={run}",
        *extra,
    ]


def _run(overrides: list[str], cwd: Path) -> None:
    result = run_train(*overrides, cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _load(checkpoint: Path) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)


def _global_step(checkpoint: Path) -> int:
    return _load(checkpoint)["global_step"]


def test_killed_mid_epoch_and_resumed_ends_like_an_uninterrupted_run(
    demo_root: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole"
    _run(_train(demo_root, whole), tmp_path)

    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *_train(demo_root, run)],
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
    assert killed_at % STEPS_PER_EPOCH != 0, "the kill should land mid-epoch"
    assert not (run / "metrics.json").exists()

    _run(_train(demo_root, run, "ckpt_path=last"), tmp_path)
    assert _global_step(last) == _global_step(whole / "checkpoints" / "last.ckpt")
    assert _global_step(last) == 2 * STEPS_PER_EPOCH
    resumed = json.loads((run / "metrics.json").read_text())
    reference = json.loads((whole / "metrics.json").read_text())
    for key in ("val/acc", "val/loss", "test/acc", "test/loss"):
        assert resumed[key] == reference[key], key
    weights, expected = _load(last)["state_dict"], _load(whole / "checkpoints" / "last.ckpt")
    for name, value in expected["state_dict"].items():
        assert torch.equal(weights[name], value), name
    assert (run / "csv" / "metrics.part1.csv").is_file()  # what the killed run logged is kept
