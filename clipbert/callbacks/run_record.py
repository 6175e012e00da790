"""Each checkpoint carries its run: the resolved config, the BERT config and the tokenizer."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from transformers import PreTrainedTokenizerBase

from clipbert.runs.record import RECORD_KEY, checkpoint_record, tokenizer_files


class RunRecorder(pl.Callback):
    """Adds the run record (:mod:`clipbert.runs.record`) to each checkpoint Lightning writes,
    so ``predict.py ckpt_path=...`` and ``model.init_from`` need nothing else."""

    def __init__(self, config: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> None:
        self.config = config
        self.tokenizer_files = tokenizer_files(tokenizer)

    def record(self, pl_module: pl.LightningModule) -> dict[str, Any]:
        """The run record of ``pl_module`` as it is now."""
        return checkpoint_record(
            self.config,
            pl_module.backbone.bert.config.to_dict(),
            self.tokenizer_files,
            getattr(pl_module, "batch_facts", None),
        )

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[RECORD_KEY] = self.record(pl_module)
