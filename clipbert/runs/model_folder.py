"""A trained run as a folder to share: weights in safetensors, everything else JSON and text.

    model.safetensors   the state dict; loading it runs no code (a pickle could)
    config.json         format version, the inference config (task, model, data root), the BERT
                        config and the task's hyper-parameters
    ans2label.json      the answer vocabulary of open-ended QA, in the original's file format
    tokenizer/          the tokenizer's files
    README.md           the model card (:mod:`clipbert.runs.model_card`)

The answers sit in their own ``ans2label.json`` rather than in ``config.json`` because that is
the file every clipbert tool already reads and checks (``predict.py ans2label=...``,
``task.datamodule.ans2label``), and because VQA's 3129 answers would bury the config.

A folder is written under a hidden name beside its destination and renamed into place once
every file is on disk, so a crash never leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from clipbert.data.annotations import answers_by_label, load_ans2label
from clipbert.runs.configs import check_targets
from clipbert.runs.model_card import CardFacts, model_card
from clipbert.runs.record import TrainedRun

FORMAT_KEY = "clipbert_model_folder"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
ANSWERS = "ans2label.json"
TOKENIZER = "tokenizer"
CARD = "README.md"
WRITE_HINT = "write one with `python convert.py src=CHECKPOINT dst=FOLDER to=folder`"


def inference_config(config: dict[str, Any]) -> dict[str, Any]:
    """What prediction reads of a run's resolved config: the task (data, sampling, image size,
    head), the model and the data root its paths start with. The trainer, logger and callback
    settings stay behind: they say nothing about the model and may name private places."""
    return {
        "paths": {"data_root": config["paths"]["data_root"]},
        "task": config["task"],
        "model": config["model"],
    }


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder this module wrote (its ``config.json`` says so)."""
    config = Path(path) / CONFIG
    try:
        return FORMAT_KEY in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def save_model_folder(
    run: TrainedRun, folder: str | Path, facts: CardFacts | None = None, *, overwrite: bool = False
) -> Path:
    """Write ``run`` as a model folder at ``folder``, with a model card stating ``facts``.

    An existing ``folder`` is replaced only with ``overwrite`` and only if it is a model folder
    itself, so a mistyped destination never deletes someone's files."""
    folder = Path(folder).expanduser()
    if folder.exists():
        if not overwrite:
            raise FileExistsError(f"{folder} exists; pass overwrite=true to replace it")
        if not is_model_folder(folder):
            raise FileExistsError(
                f"{folder} exists and is not a clipbert model folder; refusing to replace it"
            )
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        _write_files(run, partial, facts or CardFacts())
        _move_into_place(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _write_files(run: TrainedRun, folder: Path, facts: CardFacts) -> None:
    hyper_parameters = {k: v for k, v in run.hyper_parameters.items() if k != "answer_vocabulary"}
    record = {
        FORMAT_KEY: FORMAT_VERSION,
        "config": inference_config(run.config),
        "bert_config": run.bert_config,
        "hyper_parameters": hyper_parameters,
    }
    save_file(_unshared(run.state_dict), folder / WEIGHTS, metadata={"format": "pt"})
    _write_text(folder / CONFIG, json.dumps(record, indent=2) + "\n")
    if run.answer_vocabulary is not None:
        ans2label = {answer: label for label, answer in enumerate(run.answer_vocabulary)}
        _write_text(folder / ANSWERS, json.dumps(ans2label, indent=1, ensure_ascii=False) + "\n")
    for name, text in run.tokenizer_files.items():
        _write_text(folder / TOKENIZER / name, text)
    _write_text(folder / CARD, model_card(run, facts))
    for path in folder.rglob("*"):
        _sync(path)
    _sync(folder)


def _unshared(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with every tensor in storage of its own, as safetensors requires: a tied
    weight (the MLM decoder is the word-embedding matrix) is stored under each of its keys."""
    seen: set[int] = set()
    tensors = {}
    for key, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        tensors[key] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return tensors


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _sync(path: Path) -> None:
    """Flush a written file (or a folder's entries) to disk before the folder is renamed."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _move_into_place(partial: Path, folder: Path) -> None:
    """Rename the written folder to ``folder``; an old one is moved aside first and removed
    after, so ``folder`` is at every moment absent, the old model or the new one."""
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(partial, folder)
    shutil.rmtree(old, ignore_errors=True)


def load_model_folder(folder: str | Path, trusted_targets: Sequence[str] = ()) -> TrainedRun:
    """Read a model folder; like :func:`clipbert.runs.record.load_run`, never builds a class
    its config names unless our configs use it or ``trusted_targets`` lists it."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder; {WRITE_HINT}")
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} is missing: {folder} is not a complete clipbert model folder; "
                f"{WRITE_HINT}"
            )
    record = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    version = record.get(FORMAT_KEY)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{folder / CONFIG} has format version {version!r}; this clipbert reads version "
            f"{FORMAT_VERSION}. Use the clipbert release that wrote it, or convert it again"
        )
    check_targets(record["config"], str(folder / CONFIG), trusted_targets)
    hyper_parameters = dict(record["hyper_parameters"])
    if (folder / ANSWERS).is_file():
        hyper_parameters["answer_vocabulary"] = answers_by_label(load_ans2label(folder / ANSWERS))
    tokenizer = folder / TOKENIZER
    if not tokenizer.is_dir():
        raise FileNotFoundError(f"{tokenizer} is missing: the model folder has no tokenizer")
    return TrainedRun(
        state_dict=load_file(folder / WEIGHTS),
        hyper_parameters=hyper_parameters,
        config=record["config"],
        bert_config=record["bert_config"],
        tokenizer_files={
            p.name: p.read_text(encoding="utf-8") for p in tokenizer.iterdir() if p.is_file()
        },
    )
