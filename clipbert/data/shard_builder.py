"""Build a shard store (``python preprocess.py format=shards``) from a folder of videos or
images, encoded as for an LMDB, or from an existing store (an LMDB ``vis_db``), and upload a
built one to object storage (``mode=upload``)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clipbert.data.lmdb_builder import BuildReport, FileSource, write_error_log
from clipbert.data.object_storage import RemoteSettings, object_key, split_url
from clipbert.data.shard_writer import resume_keys, write_shards
from clipbert.data.shards import LITDATA_INDEX, SHARD_RECORD
from clipbert.data.stores import VisualStore

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


def parse_size(size: int | str) -> int:
    """``64MB``, ``1GiB`` or a number of bytes, as bytes."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(size))
    if match is None or match.group(2).upper() not in _UNITS:
        raise ValueError(f"shard_size {size!r} is not a size; write it like 64MB, 1GB or 256MiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def build_shards(
    source: FileSource,
    dst: str | os.PathLike[str],
    *,
    shard_bytes: int,
    workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> BuildReport:
    """Write the files of ``source`` into shards of about ``shard_bytes`` at ``dst``.
    Unreadable files are left out and listed in ``dst/error_filepaths.log``; a rerun after an
    interruption redoes only the unfinished shard."""
    store = Path(dst).expanduser().resolve()
    report = BuildReport(
        written=0, failed=[], skipped_extension=source.skipped_extension, store_path=store
    )
    done = set() if overwrite else resume_keys(store, source.settings)
    todo = [key for key in source.files if key not in done]

    def entries() -> Iterator[tuple[str, bytes]]:
        loaded = source.load(todo, workers)
        bar = tqdm(
            loaded,
            total=len(todo),
            desc=f"sharding {store.name}",
            unit="file",
            disable=not progress,
        )
        for key, path, value, error in bar:
            if error is None:
                yield key, value
            else:
                report.failed.append((str(path), error))

    build = write_shards(
        entries(), store, shard_bytes=shard_bytes, settings=source.settings, overwrite=overwrite
    )
    report.written = build.written
    report.already_present = build.already_present
    write_error_log(store, report.failed)
    return report


def shard_store_copy(
    store: VisualStore,
    dst: str | os.PathLike[str],
    *,
    shard_bytes: int,
    overwrite: bool = False,
    progress: bool = True,
) -> BuildReport:
    """Copy every entry of ``store`` (an LMDB ``vis_db``, say) into shards at ``dst``, keys in
    sorted order, bytes unchanged."""
    target = Path(dst).expanduser().resolve()
    settings = {"src_store": str(store.path)}
    done = set() if overwrite else resume_keys(target, settings)
    all_keys = store.keys()
    keys = [key for key in all_keys if key not in done]
    bar = tqdm(keys, desc=f"sharding {target.name}", unit="entry", disable=not progress)
    build = write_shards(
        ((key, store.get(key)) for key in bar),
        target,
        shard_bytes=shard_bytes,
        settings=settings,
        overwrite=overwrite,
    )
    return BuildReport(
        written=build.written,
        failed=[],
        skipped_extension=0,
        store_path=target,
        already_present=build.already_present,
    )


def upload_shards(
    src: str | os.PathLike[str], url: str, remote: RemoteSettings, progress: bool = True
) -> int:
    """Upload a built shard store to ``s3://bucket/prefix``: shards first, skipping those
    already there at the same size (a rerun resumes), the two index files last, so readers
    never see an index naming a shard that is not there yet. Returns the files uploaded."""
    local = Path(src).expanduser().resolve()
    if not (local / SHARD_RECORD).is_file() or not (local / LITDATA_INDEX).is_file():
        raise FileNotFoundError(
            f"{local} is not a finished shard store (no {SHARD_RECORD} / {LITDATA_INDEX}); "
            "finish the build first (rerun `python preprocess.py format=shards ...`)"
        )
    bucket, prefix = split_url(url)
    client = remote.client()
    present = _remote_sizes(client, bucket, prefix)
    shards = sorted(p for p in local.glob("chunk-*.bin"))
    uploaded = 0
    for file in tqdm(shards, desc=f"uploading to {url}", unit="shard", disable=not progress):
        if present.get(file.name) != file.stat().st_size:
            client.upload_file(str(file), bucket, object_key(prefix, file.name))
            uploaded += 1
    for name in (LITDATA_INDEX, SHARD_RECORD):
        client.upload_file(str(local / name), bucket, object_key(prefix, name))
        uploaded += 1
    return uploaded


def _remote_sizes(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=object_key(prefix, "")
    )
    for page in pages:
        for obj in page.get("Contents", []):
            sizes[obj["Key"].rsplit("/", 1)[-1]] = obj["Size"]
    return sizes
