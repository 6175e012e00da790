"""What a training run logs about itself besides losses: data waiting, memory, gradients, and the
FLOPs that Lightning's ``ThroughputMonitor`` turns into MFU.

Rates come from Lightning's ``ThroughputMonitor`` (``configs/callbacks/default.yaml``): per
device ``train/device/samples_per_sec`` and, with several processes, the job's
``train/samples_per_sec``; with ``flops_per_batch`` set and a GPU it knows, ``train/device/mfu``.
No library measures how long the step waits for its data, so this callback, written by hand,
logs under the ``train/`` stage:

- ``train/data_wait_fraction``: the share of wall time spent between the end of one step and
  the start of the next (fetching the batch, moving it to the device). The first batch of each
  epoch is left out: it measures worker start-up, not the loader keeping pace;
- ``train/peak_memory_mb``: peak GPU memory allocated on CUDA, else the peak resident memory
  of this process;
- ``train/grad_norm``: the L2 norm of all gradients before clipping.

The first two are logged every ``trainer.log_every_n_steps`` training batches, over the
batches since the last log; the gradient norm every ``log_every_n_steps`` optimizer steps.
The first training batch also runs under :class:`FlopCount` to count its forward and backward
FLOPs (``pl_module.flops_per_batch``); later batches of the same shape cost the same, up to
their padded text length.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import grad_norm
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


class FlopCount(TorchDispatchMode):
    """The FLOPs of the operators run under it, by torch's own formulas (``flop_registry``).

    ``FlopCounterMode`` also tracks which module runs each operator, through module hooks that
    break DDP's backward ("Expected gradient function to be set"); a dispatch mode alone sits
    below autograd and leaves DDP alone. Backward operators are counted too: autograd runs them
    with the calling thread's modes."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def videos_in_batch(batch: Any) -> int:
    """The samples of a batch for ``ThroughputMonitor``: its videos (or images)."""
    return len(batch.frames)


class TrainingMonitor(pl.Callback):
    """Logs the data-wait fraction, peak memory and gradient norm during training, and counts
    the FLOPs of the first training batch."""

    def __init__(self) -> None:
        self._reset_window()
        self._step_began: float | None = None
        self._previous_end: float | None = None
        self._flop_counter: FlopCount | None = None

    def _reset_window(self) -> None:
        self.batches = 0
        self.busy_s = 0.0
        self.wait_s = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._previous_end = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if getattr(pl_module, "flops_per_batch", 0) is None and self._flop_counter is None:
            self._flop_counter = FlopCount()
            self._flop_counter.__enter__()
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
        if self._flop_counter is not None:
            pl_module.flops_per_batch = self._stop_counting()
            now = time.perf_counter()  # the counted step is slower; its time is not the run's
            self._step_began = now
        if self._step_began is None:
            return
        self.busy_s += now - self._step_began
        self._previous_end = now
        self.batches += 1
        if self.batches >= trainer.log_every_n_steps:
            self._log_window(pl_module)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self._flop_counter is not None:
            self._stop_counting()

    def _stop_counting(self) -> int:
        """Leave the FLOP-counting mode; the FLOPs it counted."""
        counter, self._flop_counter = self._flop_counter, None
        counter.__exit__(None, None, None)
        return counter.total

    def _log_window(self, pl_module: pl.LightningModule) -> None:
        elapsed = self.busy_s + self.wait_s
        if elapsed <= 0:
            return
        values = {
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
