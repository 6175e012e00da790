"""``convert(cfg)``: an original ClipBERT checkpoint -> a self-contained clipbert ``.ckpt``; a
clipbert checkpoint -> the original's layout (``to=original``), for the original code; either
-> a model folder to share (``to=folder``: safetensors, JSON, tokenizer, model card)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from clipbert.atomic_files import save_atomic
from clipbert.cli.errors import reported
from clipbert.models.checkpoints import to_original_state_dict, with_unread_original_keys
from clipbert.runs.build import rebuild_module
from clipbert.runs.configs import CONFIG_DIR
from clipbert.runs.model_card import card_facts
from clipbert.runs.model_folder import save_model_folder
from clipbert.runs.original import load_any_run

log = logging.getLogger(__name__)

TARGETS = ("clipbert", "original", "folder")


def convert(cfg: DictConfig) -> Path:
    """Read ``cfg.src`` (an original ``.pt`` paired with task ``cfg.task``, or a clipbert
    ``.ckpt``), check it rebuilds strictly, write ``cfg.dst``.

    ``to=clipbert``: the result carries the task config, BERT config and tokenizer like a
    checkpoint of ``train.py``, so ``predict.py ckpt_path=<dst>`` and
    ``model.init_from=<dst>`` need nothing else. ``to=original``: a flat state dict with the
    original's key names and its full key list (the original's ``model_step_N.pt``), e.g. a
    ``task=pretrain_*`` run as the original's ``clipbert_image_text_pretrained.pt``.
    ``to=folder``: a model folder (:mod:`clipbert.runs.model_folder`) for
    ``Predictor.from_pretrained`` and ``predict.py ckpt_path=<dst>``, its model card stating
    the metrics of the checkpoint's training run when its folder has them.
    """
    dst = Path(cfg.dst)
    if dst.exists() and not cfg.overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=true to replace it")
    if cfg.to not in TARGETS:
        raise ValueError(f"to must be one of {', '.join(TARGETS)}, got '{cfg.to}'")
    run = load_any_run(cfg.src, cfg)
    rebuild_module(run)  # fails here, not at prediction time, if anything is off
    if cfg.to == "folder":
        save_model_folder(run, dst, card_facts(cfg.src), overwrite=cfg.overwrite)
        print(
            f"wrote {dst}/ ({len(run.state_dict)} tensors, task {run.config['task']['name']}); "
            f"load it with Predictor.from_pretrained('{dst}') or predict.py ckpt_path={dst}"
        )
        return dst
    if cfg.to == "original":
        original = with_unread_original_keys(to_original_state_dict(run.state_dict))
        save_atomic(original, dst)
        print(f"wrote {dst} ({len(original)} tensors in the original ClipBERT's key layout)")
        return dst
    run.save(dst)
    print(f"wrote {dst} ({len(run.state_dict)} tensors, task {run.config['task']['name']})")
    return dst


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="convert")
@reported
def main(cfg: DictConfig) -> None:
    """Console entry point (``python convert.py`` / ``clipbert-convert``)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    convert(cfg)
