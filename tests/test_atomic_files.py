"""Atomic file writes: readers see the old file or the new one; leftovers of killed writers are
cleaned up by the next write of the same file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clipbert.atomic_files import _atomic_file, save_atomic, write_text_atomic


def _partial(target: Path, pid: int) -> Path:
    return target.with_name(f"{target.name}.{socket.gethostname()}.{pid}.partial")


def test_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.ckpt"
    save_atomic({"w": torch.ones(2)}, target)
    with pytest.raises(RuntimeError, match="disk full"), _atomic_file(target) as file:
        file.write(b"half a checkpoint")
        raise RuntimeError("disk full")
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


def test_partial_files_of_dead_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "predictions.jsonl"
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = _partial(target, int(finished.stdout))
    alive = _partial(target, os.getppid())  # a writer that may still finish
    other_file = _partial(tmp_path / "metrics.json", int(finished.stdout))
    for leftover in (dead, alive, other_file):
        leftover.write_text("torn")
    write_text_atomic(target, "complete")
    assert target.read_text() == "complete"
    assert not dead.exists() and alive.exists() and other_file.exists()
