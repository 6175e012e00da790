"""``convert(cfg)``: an original ClipBERT checkpoint -> a self-contained clipbert ``.ckpt``, or
a clipbert checkpoint -> the original's layout (``to=original``), for the original code."""

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
from clipbert.runs.original import load_any_run

log = logging.getLogger(__name__)


def convert(cfg: DictConfig) -> Path:
    """Read ``cfg.src`` (an original ``.pt`` paired with task ``cfg.task``, or a clipbert
    ``.ckpt``), check it rebuilds strictly, write ``cfg.dst``.

    ``to=clipbert``: the result carries the task config, BERT config and tokenizer like a
    checkpoint of ``train.py``, so ``predict.py ckpt_path=<dst>`` and
    ``model.init_from=<dst>`` need nothing else. ``to=original``: a flat state dict with the
    original's key names and its full key list (the original's ``model_step_N.pt``), e.g. a
    ``task=pretrain_*`` run as the original's ``clipbert_image_text_pretrained.pt``.
    """
    dst = Path(cfg.dst)
    if dst.exists() and not cfg.overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=true to replace it")
    if cfg.to not in ("clipbert", "original"):
        raise ValueError(f"to must be 'clipbert' or 'original', got '{cfg.to}'")
    run = load_any_run(cfg.src, cfg)
    rebuild_module(run)  # fails here, not at prediction time, if anything is off
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
