"""A trained run as one self-contained record: what rebuilds the model without its config files.

A ``.ckpt`` carries, beside Lightning's weights and hyper-parameters, a record under
``checkpoint["clipbert"]``: the resolved config (model, sampling, image size), the BERT config
and the tokenizer files, so ``predict.py ckpt_path=...`` needs nothing else. Only plain types go
in, so the checkpoint loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from clipbert.atomic_files import save_atomic
from clipbert.data.text import load_tokenizer
from clipbert.models.checkpoints import load_plain
from clipbert.runs.configs import check_targets

RECORD_KEY = "clipbert"
FORMAT_VERSION = 1


def tokenizer_files(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """The tokenizer's saved files as text, keyed by file name."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_text(encoding="utf-8") for p in Path(tmp).iterdir() if p.is_file()}


def checkpoint_record(
    config: dict[str, Any],
    bert_config: dict[str, Any],
    tokenizer_files: dict[str, str],
    batch_facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What goes under ``checkpoint["clipbert"]``. ``batch_facts``: the run's global batch and
    schedule length (:func:`clipbert.tasks.base.global_batch_facts`)."""
    return {
        "format_version": FORMAT_VERSION,
        "config": config,
        "bert_config": bert_config,
        "tokenizer_files": tokenizer_files,
        "batch_facts": batch_facts,
    }


@dataclass
class TrainedRun:
    """A trained model: its weights, the task module's hyper-parameters (the answer vocabulary
    of open-ended QA), the resolved config it was trained with, its BERT config and tokenizer."""

    state_dict: dict[str, torch.Tensor]
    hyper_parameters: dict[str, Any]
    config: dict[str, Any]
    bert_config: dict[str, Any]
    tokenizer_files: dict[str, str]

    @property
    def answer_vocabulary(self) -> list[str] | None:
        """Answers indexed by label (open-ended QA), else None."""
        return self.hyper_parameters.get("answer_vocabulary")

    def write_tokenizer(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.tokenizer_files.items():
            (folder / name).write_text(text, encoding="utf-8")
        return folder

    def tokenizer(self):
        """The run's tokenizer, loaded from its recorded files."""
        with tempfile.TemporaryDirectory() as folder:
            return load_tokenizer(self.write_tokenizer(Path(folder)))

    def save(self, path: str | Path) -> Path:
        """Write the run as a checkpoint that ``predict.py`` and ``model.init_from`` read."""
        checkpoint = {
            "state_dict": self.state_dict,
            "hyper_parameters": self.hyper_parameters,
            RECORD_KEY: checkpoint_record(self.config, self.bert_config, self.tokenizer_files),
        }
        return save_atomic(checkpoint, path)

    @classmethod
    def from_checkpoint(cls, checkpoint: object) -> TrainedRun | None:
        """The run in a loaded checkpoint, or None if it carries no run record."""
        record = checkpoint.get(RECORD_KEY) if isinstance(checkpoint, dict) else None
        if record is None:
            return None
        return cls(
            state_dict=checkpoint["state_dict"],
            hyper_parameters=dict(checkpoint.get("hyper_parameters", {})),
            config=record["config"],
            bert_config=record["bert_config"],
            tokenizer_files=record["tokenizer_files"],
        )


def load_run(path: str | Path, trusted_targets: Sequence[str] = ()) -> TrainedRun:
    """Read a checkpoint written by ``train.py`` or ``convert.py``; never unpickles code, and
    never builds a class its recorded config names unless our configs use it or
    ``trusted_targets`` lists it."""
    run = TrainedRun.from_checkpoint(load_plain(path))
    if run is None:
        raise ValueError(
            f"{path} has no '{RECORD_KEY}' run record: it was not written by clipbert's train.py"
        )
    check_targets(run.config, f"the run record of {path}", trusted_targets)
    return run
