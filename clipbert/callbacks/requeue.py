"""SLURM's requeue signal handled at a batch boundary, so a requeued job resumes exactly.

Under SLURM, Lightning saves ``hpc_ckpt_<n>.ckpt`` and calls ``scontrol requeue`` from inside
its SIGUSR1 handler, which runs wherever the signal lands: mid-step, the checkpoint then counts a
batch as fetched that no optimizer step has used, and the resumed run skips it (or, rarely,
catches an optimizer step half applied). This callback takes the signal instead, notes it, and
runs Lightning's own handler at the end of the next training batch, where the state is whole, as
a step checkpoint's is. Under DDP the processes agree on that batch (any one signalled is
enough), since saving a checkpoint is collective.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.plugins.environments import SLURMEnvironment


class RequeueAtBatchEnd(pl.Callback):
    """Defers Lightning's SLURM requeue handler (SIGUSR1) to the next training batch end."""

    def __init__(self) -> None:
        self._deferred: Callable[..., Any] | None = None
        self._signalled = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not SLURMEnvironment.detect():
            return
        lightning_handler = signal.getsignal(signal.SIGUSR1)
        if callable(lightning_handler):  # auto-requeue is on: Lightning installed its handler
            self._deferred = lightning_handler
            signal.signal(signal.SIGUSR1, self._note_signal)

    def _note_signal(self, signum: int, frame: Any) -> None:
        self._signalled = True

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._deferred is None:
            return
        if trainer.strategy.reduce_boolean_decision(self._signalled, all=False):
            self._signalled = False
            self._deferred(signal.SIGUSR1, None)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._deferred is not None:
            signal.signal(signal.SIGUSR1, self._deferred)
            self._deferred = None
