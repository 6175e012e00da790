"""``preprocess(cfg)``: a folder of videos or images -> a vis_db LMDB in the original's format."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from clipbert.cli import CONFIG_DIR
from clipbert.data.lmdb_builder import BuildReport, build_vis_db

log = logging.getLogger(__name__)


def preprocess(cfg: DictConfig) -> BuildReport:
    """Write ``cfg.src`` into the LMDB at ``cfg.dst`` and report what was stored or failed."""
    report = build_vis_db(
        cfg.src,
        cfg.dst,
        file_type=cfg.file_type,
        extensions=list(cfg.ext) if cfg.ext else None,
        overwrite=cfg.overwrite,
        jpeg_quality=cfg.jpeg_quality,
    )
    log.info(report.summary())
    return report


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="preprocess")
def main(cfg: DictConfig) -> None:
    """Console entry point (``python preprocess.py`` / ``clipbert-preprocess``)."""
    preprocess(cfg)
