"""``preprocess(cfg)``: build a vis_db from a folder of videos or images, as an LMDB in the
original's format or as shards for object storage (``format=shards``, also from an LMDB), upload
shards (``mode=upload``), look after a store (``mode=inspect|validate|export|check``), or prepare
the text side (``mode=annotations`` converts a public release file, ``mode=vocab`` builds
ans2label)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from clipbert.atomic_files import write_text_atomic
from clipbert.cli.errors import reported
from clipbert.data.decoding import build_decoder
from clipbert.data.lmdb_builder import BuildReport, FileSource, build_vis_db
from clipbert.data.object_storage import RemoteSettings, is_remote
from clipbert.data.reencode import ReencodeSettings
from clipbert.data.release_converters import SOURCES, build_ans2label, convert, write_jsonl
from clipbert.data.shard_builder import (
    build_shards,
    parse_size,
    shard_store_copy,
    upload_shards,
)
from clipbert.data.store_access import is_store, open_store
from clipbert.data.store_tools import (
    check_annotations,
    export_store,
    inspect_store,
    validate_store,
)
from clipbert.runs.configs import CONFIG_DIR

log = logging.getLogger(__name__)

MODES = ("build", "upload", "inspect", "validate", "export", "check", "annotations", "vocab")
FORMATS = ("lmdb", "shards")


def preprocess(cfg: DictConfig) -> object:
    """Run ``cfg.mode`` and log its summary; return its report."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    remote = RemoteSettings.from_config(cfg.storage, "storage")
    if cfg.mode == "build":
        report = _build(cfg, remote)
        log.info(report.summary())
        return report
    if cfg.mode == "upload":
        if not (cfg.out and is_remote(cfg.out)):
            raise ValueError("mode=upload needs out=s3://bucket/prefix (and dst=the built shards)")
        uploaded = upload_shards(cfg.dst, cfg.out, remote)
        log.info("uploaded %d files to %s", uploaded, cfg.out)
        return uploaded
    if cfg.mode in ("annotations", "vocab"):
        return _text_mode(cfg)
    store = open_store(cfg.dst, remote)
    if cfg.mode == "inspect":
        report = inspect_store(store)
    elif cfg.mode == "validate":
        decoder = build_decoder(cfg.decoder, cfg.decoder_fallback, cfg.decode_timeout)
        report_dir = None if is_remote(cfg.dst) else Path(cfg.dst)
        report = validate_store(store, cfg.file_type, decoder, report_dir=report_dir)
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


def _build(cfg: DictConfig, remote: RemoteSettings) -> BuildReport:
    """``mode=build``: an LMDB from a folder, or shards from a folder or an existing store."""
    if cfg.format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    if not cfg.src:
        raise ValueError("mode=build needs src=path/to/folder (the videos or images)")
    if cfg.format == "lmdb":
        return build_vis_db(
            cfg.src,
            cfg.dst,
            file_type=cfg.file_type,
            extensions=list(cfg.ext) if cfg.ext else None,
            overwrite=cfg.overwrite,
            jpeg_quality=cfg.jpeg_quality,
            image_format=cfg.image_format,
            reencode=ReencodeSettings(**cfg.reencode),
            workers=cfg.workers,
            duplicate_stems=cfg.duplicate_stems,
            commit_every=cfg.commit_every,
        )
    if is_remote(cfg.dst):
        raise ValueError(
            "format=shards builds on local disk: set dst to a folder, then upload it with "
            "`python preprocess.py mode=upload dst=<folder> out=s3://bucket/prefix`"
        )
    shard_bytes = parse_size(cfg.shard_size)
    if is_store(cfg.src):
        return shard_store_copy(
            open_store(cfg.src, remote), cfg.dst, shard_bytes=shard_bytes, overwrite=cfg.overwrite
        )
    source = FileSource.scan(
        cfg.src,
        file_type=cfg.file_type,
        extensions=list(cfg.ext) if cfg.ext else None,
        jpeg_quality=cfg.jpeg_quality,
        image_format=cfg.image_format,
        reencode=ReencodeSettings(**cfg.reencode),
        duplicate_stems=cfg.duplicate_stems,
    )
    return build_shards(
        source, cfg.dst, shard_bytes=shard_bytes, workers=cfg.workers, overwrite=cfg.overwrite
    )


def _text_mode(cfg: DictConfig) -> Path:
    """``annotations``: a public release file -> jsonl; ``vocab``: jsonl files -> ans2label."""
    if cfg.mode == "annotations":
        if not (cfg.source and cfg.src):
            raise ValueError(f"mode=annotations needs source=<{'|'.join(SOURCES)}> and src=FILE")
        rows = convert(
            cfg.source, cfg.src, split=cfg.split, answers=cfg.answers, image_key=cfg.image_key
        )
        path = write_jsonl(rows, cfg.dst)
        log.info("wrote %d rows to %s", len(rows), path)
        return path
    if not cfg.annotations:
        raise ValueError("mode=vocab needs annotations=[train.jsonl, ...] and top_k")
    ans2label = build_ans2label(list(cfg.annotations), cfg.top_k)
    path = write_text_atomic(cfg.dst, json.dumps(ans2label, indent=2) + "\n")
    log.info("wrote %d answers to %s", len(ans2label), path)
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="preprocess")
@reported
def main(cfg: DictConfig) -> None:
    """Console entry point (``python preprocess.py`` / ``clipbert-preprocess``)."""
    preprocess(cfg)
