"""What a training run logs about itself besides losses: speed, data waiting, memory, gradients.

Lightning's ``ThroughputMonitor`` needs FLOP counts and logs under its own names; this callback
is written by hand to log, under the ``train/`` stage like every other metric:

- ``train/videos_per_s``: videos through the training step per second of wall time;
- ``train/data_wait_fraction``: the share of that wall time spent between the end of one step
  and the start of the next (fetching the batch, moving it to the device). The first batch of
  each epoch is left out: it measures worker start-up, not the loader keeping pace;
- ``train/peak_memory_mb``: peak GPU memory allocated on CUDA, else the peak resident memory
  of this process;
- ``train/grad_norm``: the L2 norm of all gradients before clipping.

The first three are logged every ``trainer.log_every_n_steps`` training batches, over the
batches since the last log; the gradient norm every ``log_every_n_steps`` optimizer steps.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import grad_norm


class TrainingMonitor(pl.Callback):
    """Logs throughput, data-wait fraction, peak memory and gradient norm during training."""

    def __init__(self) -> None:
        self._reset_window()
        self._step_began: float | None = None
        self._previous_end: float | None = None

    def _reset_window(self) -> None:
        self.batches = 0
        self.videos = 0
        self.busy_s = 0.0
        self.wait_s = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._previous_end = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._previous_end is not None:
            self.wait_s += now - self._previous_end
        self._step_began = now

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        now = time.perf_counter()
        if self._step_began is None:
            return
        self.busy_s += now - self._step_began
        self._previous_end = now
        frames = getattr(batch, "frames", None)
        self.videos += len(frames) if frames is not None else 0
        self.batches += 1
        if self.batches >= trainer.log_every_n_steps:
            self._log_window(pl_module)

    def _log_window(self, pl_module: pl.LightningModule) -> None:
        elapsed = self.busy_s + self.wait_s
        if elapsed <= 0:
            return
        values = {
            "train/videos_per_s": self.videos / elapsed,
            "train/data_wait_fraction": self.wait_s / elapsed,
            "train/peak_memory_mb": peak_memory_mb(pl_module.device),
        }
        pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=1)
        self._reset_window()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        # the optimizer step about to happen is global_step + 1
        if (trainer.global_step + 1) % trainer.log_every_n_steps:
            return
        norms = grad_norm(pl_module, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            pl_module.log(
                "train/grad_norm",
                norms["grad_2.0_norm_total"],
                on_step=True,
                on_epoch=False,
                batch_size=1,
            )


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on ``device``, or this process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
