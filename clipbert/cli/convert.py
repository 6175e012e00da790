"""``convert(cfg)``: an original ClipBERT checkpoint -> a self-contained clipbert ``.ckpt``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from clipbert.cli.errors import reported
from clipbert.runs.build import rebuild_module
from clipbert.runs.configs import CONFIG_DIR
from clipbert.runs.original import load_any_run

log = logging.getLogger(__name__)


def convert(cfg: DictConfig) -> Path:
    """Pair ``cfg.src`` with task ``cfg.task``, check it loads strictly, write ``cfg.dst``.

    The result carries the task config, BERT config and tokenizer like a checkpoint of
    ``train.py``, so ``predict.py ckpt_path=<dst>`` and ``model.init_from=<dst>`` need nothing
    else.
    """
    dst = Path(cfg.dst)
    if dst.exists() and not cfg.overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=true to replace it")
    run = load_any_run(cfg.src, cfg)
    rebuild_module(run)  # fails here, not at prediction time, if anything is off
    run.save(dst)
    print(f"wrote {dst} ({len(run.state_dict)} tensors, task {run.config['task']['name']})")
    return dst


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="convert")
@reported
def main(cfg: DictConfig) -> None:
    """Console entry point (``python convert.py`` / ``clipbert-convert``)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    convert(cfg)
