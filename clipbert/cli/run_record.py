"""Store in every checkpoint what is needed to rebuild the run without its config files.

A ``.ckpt`` then carries the resolved config (model, sampling, image size, answers), the BERT
config and the tokenizer files, so ``predict.py ckpt_path=...`` needs nothing else. Only plain
types go in, so the checkpoint loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from transformers import PreTrainedTokenizerBase

from clipbert.files import save_atomic
from clipbert.models.checkpoints import load_plain

RECORD_KEY = "clipbert"
FORMAT_VERSION = 1


def tokenizer_files(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """The tokenizer's saved files as text, keyed by file name."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_text(encoding="utf-8") for p in Path(tmp).iterdir() if p.is_file()}


def run_record(
    config: dict[str, Any],
    bert_config: dict[str, Any],
    tokenizer_files: dict[str, str],
    batch_facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record stored under ``checkpoint["clipbert"]``. ``batch_facts`` holds the run's
    global batch and schedule length (:func:`clipbert.tasks.base.global_batch_facts`)."""
    return {
        "format_version": FORMAT_VERSION,
        "config": config,
        "bert_config": bert_config,
        "tokenizer_files": tokenizer_files,
        "batch_facts": batch_facts,
    }


class RunRecord(pl.Callback):
    """Adds the run record to each checkpoint Lightning writes."""

    def __init__(self, config: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> None:
        self.config = config
        self.tokenizer_files = tokenizer_files(tokenizer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        bert_config = pl_module.backbone.bert.config.to_dict()
        checkpoint[RECORD_KEY] = run_record(
            self.config,
            bert_config,
            self.tokenizer_files,
            getattr(pl_module, "batch_facts", None),
        )


@dataclass
class LoadedRun:
    """A checkpoint's weights, hyper-parameters and run record."""

    state_dict: dict[str, torch.Tensor]
    hyper_parameters: dict[str, Any]
    config: dict[str, Any]
    bert_config: dict[str, Any]
    tokenizer_files: dict[str, str]

    def write_tokenizer(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.tokenizer_files.items():
            (folder / name).write_text(text, encoding="utf-8")
        return folder


def run_from_checkpoint(checkpoint: object) -> LoadedRun | None:
    """The run in a loaded checkpoint, or None if it carries no run record."""
    record = checkpoint.get(RECORD_KEY) if isinstance(checkpoint, dict) else None
    if record is None:
        return None
    return LoadedRun(
        state_dict=checkpoint["state_dict"],
        hyper_parameters=dict(checkpoint.get("hyper_parameters", {})),
        config=record["config"],
        bert_config=record["bert_config"],
        tokenizer_files=record["tokenizer_files"],
    )


def load_run(path: str | Path) -> LoadedRun:
    """Read a checkpoint written by ``train.py``; never unpickles code."""
    run = run_from_checkpoint(load_plain(path))
    if run is None:
        raise ValueError(
            f"{path} has no '{RECORD_KEY}' run record: it was not written by clipbert's train.py"
        )
    return run


def save_run(run: LoadedRun, path: str | Path) -> Path:
    """Write ``run`` as a checkpoint that ``predict.py`` and ``model.init_from`` read."""
    checkpoint = {
        "state_dict": run.state_dict,
        "hyper_parameters": run.hyper_parameters,
        RECORD_KEY: run_record(run.config, run.bert_config, run.tokenizer_files),
    }
    return save_atomic(checkpoint, path)
