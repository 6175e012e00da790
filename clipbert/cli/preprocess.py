"""``preprocess(cfg)``: build a vis_db LMDB in the original's format from a folder of videos or
images, or look after one (``mode=inspect|validate|export|check``)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from clipbert.cli import CONFIG_DIR
from clipbert.data.decoding import build_decoder
from clipbert.data.lmdb_builder import build_vis_db
from clipbert.data.store_tools import (
    check_annotations,
    export_store,
    inspect_store,
    validate_store,
)
from clipbert.data.stores import open_store

log = logging.getLogger(__name__)

MODES = ("build", "inspect", "validate", "export", "check")


def preprocess(cfg: DictConfig) -> object:
    """Run ``cfg.mode`` and log its summary; return its report."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if cfg.mode == "build":
        if not cfg.src:
            raise ValueError("mode=build needs src=path/to/folder (the videos or images)")
        report = build_vis_db(
            cfg.src,
            cfg.dst,
            file_type=cfg.file_type,
            extensions=list(cfg.ext) if cfg.ext else None,
            overwrite=cfg.overwrite,
            jpeg_quality=cfg.jpeg_quality,
            workers=cfg.workers,
            duplicate_stems=cfg.duplicate_stems,
            commit_every=cfg.commit_every,
        )
        log.info(report.summary())
        return report
    store = open_store(cfg.dst)
    if cfg.mode == "inspect":
        report = inspect_store(store)
    elif cfg.mode == "validate":
        decoder = build_decoder(cfg.decoder, cfg.decoder_fallback)
        report = validate_store(store, cfg.file_type, decoder, report_dir=Path(cfg.dst))
    elif cfg.mode == "check":
        if not cfg.annotations:
            raise ValueError("mode=check needs annotations=[path/to/split.jsonl, ...]")
        report = check_annotations(store, list(cfg.annotations))
    else:
        if not cfg.out:
            raise ValueError("mode=export needs out=path/to/folder")
        written = export_store(store, cfg.out)
        log.info("exported %d files to %s", written, cfg.out)
        return written
    log.info(report.summary())
    return report


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="preprocess")
def main(cfg: DictConfig) -> None:
    """Console entry point (``python preprocess.py`` / ``clipbert-preprocess``)."""
    preprocess(cfg)
