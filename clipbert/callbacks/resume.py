"""What makes a killed run resume exactly where it stopped.

Lightning restores the model, optimizer, scheduler, loop counters and (with a stateful loader)
the data position. The gaps closed here:

- ``AtomicCheckpointIO``: Lightning stages a checkpoint in the system's temporary folder and then
  moves it, which becomes a plain copy (tearable) when that folder is on another file system;
  this writes beside the target and renames.
- ``ExactResume``: the Python, NumPy and torch random states (dropout, MLM masking, mined
  negatives) go into each checkpoint as plain types (``weights_only=True`` still loads them)
  and come back on resume. It also puts the training loader at the saved position of the saved
  epoch: Lightning drops the loader state when ``trainer.estimated_stepping_batches`` ran before
  the restore, as our ``configure_optimizers`` does (Lightning issue #20550), and it creates
  the resumed iterator before telling the sampler the epoch.
- ``requeued_checkpoint``: a job SLURM restarted continues from its own newest checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.data import _set_sampler_epoch

from clipbert.atomic_files import save_atomic

RANDOM_STATE_KEY = "random_states"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves each checkpoint through a ``.partial`` file beside it and an atomic rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_atomic(checkpoint, path)


class ExactResume(pl.Callback):
    """Random states in checkpoints, and the training loader at its saved position on resume."""

    def __init__(self) -> None:
        self._resumed = False

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[RANDOM_STATE_KEY] = random_states()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        if RANDOM_STATE_KEY in checkpoint:
            set_random_states(checkpoint[RANDOM_STATE_KEY])
        self._resumed = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._resumed:
            return
        self._resumed = False
        loop = trainer.fit_loop  # private parts of the loop: see the module docstring
        if loop._combined_loader is None or loop._data_fetcher is None:
            return
        for loader in loop._combined_loader.flattened:
            _set_sampler_epoch(loader, loop.epoch_progress.current.processed)
        loop._load_combined_loader_states()  # no-op when Lightning already loaded them
        iter(loop._data_fetcher)  # a new iterator, from the restored position


def random_states() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) random states as tensors, lists and numbers."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def requeued_checkpoint(run_dir: Path) -> Path | None:
    """In a job SLURM restarted (``SLURM_RESTART_COUNT``), the newest checkpoint of its folder:
    Lightning's ``hpc_ckpt_<n>.ckpt``, saved when the requeue signal came, or
    ``checkpoints/last.ckpt`` when the job was stopped without one (a preemption that sent only
    SIGTERM). Lightning alone would take an older hpc checkpoint, or start over without one."""
    if int(os.environ.get("SLURM_RESTART_COUNT") or 0) < 1:
        return None
    found = [*run_dir.glob("hpc_ckpt_*.ckpt"), *run_dir.glob("checkpoints/last.ckpt")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None
