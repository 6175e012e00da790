"""Shut the process group down before Python exits, so a DDP run on CPUs cannot abort at exit.

Lightning destroys an NCCL group at exit but leaves a gloo one (DDP on CPUs) to the interpreter,
and gloo's worker threads then outlive Python. A worker that drops the last reference to an
allreduce launched during backward must take the GIL to release the Python context that PyTorch
stashed with it; a finalizing interpreter ends such a thread from inside a C++ destructor, and
the process aborts (SIGABRT, "terminate called without an active exception") after the run has
finished and written everything. Its exit status then tells a scheduler the job failed.

Destroying the group in an ``atexit`` handler joins those threads while Python is still whole:
the group's destructor releases the GIL, so a worker waiting for it finishes first. A collection
comes first: anything of the run's that holds the group through a reference cycle would keep the
threads alive.

A run that failed is left to exit as Lightning leaves it: a worker may be stuck in a collective
with a process that is gone, and joining it would hang until the group's timeout.
"""

from __future__ import annotations

import atexit
import gc

import pytorch_lightning as pl
import torch.distributed as dist


def shut_down_process_group() -> None:
    """Destroy the default process group, if any, which joins its worker threads once nothing
    else holds it."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    dist.destroy_process_group()


class ShutDownProcessGroupAtExit(pl.Callback):
    """Registers :func:`shut_down_process_group` to run at exit in every process of a run,
    and withdraws it when the run fails."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        atexit.unregister(shut_down_process_group)  # once per process, however many runs
        atexit.register(shut_down_process_group)  # a no-op where no group was made

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        atexit.unregister(shut_down_process_group)
