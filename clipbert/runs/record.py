"""Store in every checkpoint what is needed to rebuild the run without its config files.

A ``.ckpt`` then carries the resolved config (model, sampling, image size, answers), the BERT
config and the tokenizer files, so ``predict.py ckpt_path=...`` needs nothing else. Only plain
types go in, so the checkpoint loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from transformers import PreTrainedTokenizerBase

from clipbert.cli import CONFIG_DIR
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


def load_run(path: str | Path, trusted_targets: Sequence[str] = ()) -> LoadedRun:
    """Read a checkpoint written by ``train.py``; never unpickles code, and never builds a
    class its recorded config names unless our configs use it or ``trusted_targets`` lists it.
    """
    run = run_from_checkpoint(load_plain(path))
    if run is None:
        raise ValueError(
            f"{path} has no '{RECORD_KEY}' run record: it was not written by clipbert's train.py"
        )
    check_targets(run.config, f"the run record of {path}", trusted_targets)
    return run


def check_targets(config: Any, source: str, trusted: Sequence[str] = ()) -> None:
    """Refuse a config that would make Hydra call anything but what clipbert's own configs call.

    Rebuilding a model from a checkpoint instantiates the ``_target_`` entries of its recorded
    config; a checkpoint from someone else could name any callable (``os.system``), which is as
    dangerous as unpickling it. ``trusted`` adds targets the user vouches for.
    """
    allowed = shipped_targets() | set(trusted)
    for key, target in _targets(config):
        if target not in allowed:
            raise ValueError(
                f"{source} names {target!r} at '{key}._target_', which no clipbert config "
                "uses; building it could run any code. If you trust this checkpoint, pass "
                f"trusted_targets=[{target}]"
            )


@functools.cache
def shipped_targets() -> frozenset[str]:
    """Every ``_target_`` in the configs that ship with clipbert (except ``get_class``, which
    returns any class it is given)."""
    found = set()
    for file in Path(CONFIG_DIR).rglob("*.yaml"):
        config = OmegaConf.to_container(OmegaConf.load(file), resolve=False)
        found |= {target for _, target in _targets(config)}
    return frozenset(found - {"hydra.utils.get_class"})


def _targets(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, target) of every ``_target_`` in a nested config of dicts and lists."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "_target_":
                yield key or "<root>", str(value)
            else:
                yield from _targets(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _targets(value, f"{key}[{index}]")


def save_run(run: LoadedRun, path: str | Path) -> Path:
    """Write ``run`` as a checkpoint that ``predict.py`` and ``model.init_from`` read."""
    checkpoint = {
        "state_dict": run.state_dict,
        "hyper_parameters": run.hyper_parameters,
        RECORD_KEY: run_record(run.config, run.bert_config, run.tokenizer_files),
    }
    return save_atomic(checkpoint, path)
