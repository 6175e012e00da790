"""``checkpoints/step_{N}.ckpt`` at the original's cadence, for choosing a model by its step.

The original keeps no best checkpoint: it writes ``ckpt/model_step_{N}.pt`` every
``valid_steps = ceil(total / num_valid / min_valid_steps) * min_valid_steps`` optimizer steps
and once more at the end, and its users run inference on the step they pick
(``--inference_model_step``). These files are what ``predict.py run_dir=<run> step=N`` reads.
Like the original's, they hold the weights only (with the run record that ``predict.py``
needs), not the optimizer: ``last.ckpt`` is the one to resume from.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from clipbert.callbacks.run_record import RunRecorder
from clipbert.runs.record import TrainedRun
from clipbert.runs.selection import step_checkpoint_path

log = logging.getLogger(__name__)


def original_cadence(total_steps: int, num_valid: int, min_valid_steps: int) -> int:
    """The original's ``valid_steps``: ``num_valid`` saves over the run, rounded up to a
    multiple of ``min_valid_steps``."""
    return math.ceil(total_steps / num_valid / min_valid_steps) * min_valid_steps


class ModelStepCheckpoints(pl.Callback):
    """Weights (and the run record) every ``original_cadence(...)`` optimizer steps and at the
    end of training, as ``step_{N}.ckpt`` in ``dirpath``; never deleted."""

    def __init__(self, dirpath: str | Path, num_valid: int = 20, min_valid_steps: int = 100):
        for name, value in (("num_valid", num_valid), ("min_valid_steps", min_valid_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"callbacks.model_steps.{name} must be an int >= 1, got {value!r}")
        self.dirpath = Path(dirpath)
        self.num_valid = num_valid
        self.min_valid_steps = min_valid_steps
        self.every: int | None = None
        self._last_saved = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = max(int(trainer.estimated_stepping_batches), 1)
        self.every = original_cadence(total, self.num_valid, self.min_valid_steps)
        self._last_saved = trainer.global_step  # a resumed run has saved up to here
        log.info("step checkpoints every %d optimizer steps in %s", self.every, self.dirpath)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        step = trainer.global_step
        if self.every and step % self.every == 0:
            self._save(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module)

    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Once per optimizer step (micro-batches of an accumulated step share one)."""
        step = trainer.global_step
        if step == self._last_saved or trainer.sanity_checking:
            return
        self._last_saved = step
        state_dict = trainer.strategy.lightning_module_state_dict()  # collective under FSDP
        if not trainer.is_global_zero:
            return
        recorder = next((c for c in trainer.callbacks if isinstance(c, RunRecorder)), None)
        if recorder is None:
            raise RuntimeError("step checkpoints need the RunRecorder callback (train.py adds it)")
        record = recorder.record(pl_module)
        run = TrainedRun(
            state_dict={k: v.detach().cpu() for k, v in state_dict.items()},
            hyper_parameters=dict(pl_module.hparams),
            config=record["config"],
            bert_config=record["bert_config"],
            tokenizer_files=record["tokenizer_files"],
        )
        path = run.save(step_checkpoint_path(self.dirpath, step))
        log.info("step %d: %s", step, path)
