"""Write a shard store (litdata's chunk format plus our key record) on local disk, one shard at
a time: each finished shard is recorded in ``.parts/``, so an interrupted build, rerun, redoes
only the shard it was writing."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipbert.atomic_files import write_text_atomic
from clipbert.data.lmdb_builder import ERROR_LOG
from clipbert.data.shards import LITDATA_INDEX, SHARD_RECORD, require_shards_extra
from clipbert.data.stores import StoreNotEmptyError

PARTS_DIR = ".parts"
_NO_LIMIT = 1 << 62  # a chunk byte limit no shard reaches: the writer flushes one chunk at done()


@dataclass
class ShardBuild:
    """What :func:`write_shards` did."""

    written: int
    shards: int
    already_present: int
    total_bytes: int


def write_shards(
    entries: Iterable[tuple[str, bytes]],
    dst: str | os.PathLike[str],
    *,
    shard_bytes: int,
    settings: dict[str, Any],
    overwrite: bool = False,
) -> ShardBuild:
    """Write ``(key, bytes)`` pairs into a local shard store at ``dst``, in their order.

    A shard is closed once it holds ``shard_bytes``. ``settings`` (what the entries come from)
    is recorded: a rerun with the same settings resumes, skipping keys of finished shards (the
    caller may pass :func:`resume_keys` to its source to avoid reading them), and other
    settings are refused unless ``overwrite``.
    """
    require_shards_extra()
    if shard_bytes < 1:
        raise ValueError(f"shard size must be > 0 bytes, got {shard_bytes}")
    store = Path(dst).expanduser().resolve()
    parts = _prepare(store, settings, overwrite)
    resumed = {key for part in parts for key in part["keys"]}
    seen: set[str] = set()
    pending: list[tuple[str, bytes]] = []
    pending_bytes = 0
    for key, value in entries:
        if key in resumed:
            continue
        if key in seen:
            raise ValueError(f"key {key!r} was given twice; visual keys must be unique")
        seen.add(key)
        pending.append((key, value))
        pending_bytes += len(value)
        if pending_bytes >= shard_bytes:
            parts.append(_write_shard(store, len(parts), pending))
            pending, pending_bytes = [], 0
    if pending:
        parts.append(_write_shard(store, len(parts), pending))
    if not parts:
        raise ValueError(f"nothing to write into {store}: the source gave no entries")
    _finish(store, parts, settings)
    return ShardBuild(
        written=len(seen),
        shards=len(parts),
        already_present=len(resumed),
        total_bytes=sum(p["bytes"] for p in parts),
    )


def resume_keys(dst: str | os.PathLike[str], settings: dict[str, Any]) -> set[str]:
    """Keys already in finished shards of an interrupted build with these ``settings``."""
    store = Path(dst).expanduser().resolve()
    if _recorded_settings(store) != settings:
        return set()
    return {key for part in _finished_parts(store) for key in part["keys"]}


def _prepare(store: Path, settings: dict[str, Any], overwrite: bool) -> list[dict]:
    """Clear, resume or refuse ``store``; return the finished parts to keep."""
    if store.exists() and not store.is_dir():
        raise NotADirectoryError(f"cannot build a shard store at {store}: it is a file")
    if overwrite and store.exists():
        _remove_build(store)
    store.mkdir(parents=True, exist_ok=True)
    recorded = _recorded_settings(store)
    if (store / LITDATA_INDEX).exists() and recorded == settings:
        (store / LITDATA_INDEX).unlink()  # rebuilt below from the parts; a rerun adds nothing
    if recorded is not None and recorded != settings:
        raise StoreNotEmptyError(
            f"{store} was built with other settings ({recorded}); build into another "
            "directory, or pass overwrite=true to replace it"
        )
    if recorded is None and any(store.iterdir()):
        raise StoreNotEmptyError(
            f"{store} already holds files that are not a shard build; choose an empty or new "
            "directory, or pass overwrite=true to replace it"
        )
    (store / PARTS_DIR).mkdir(exist_ok=True)
    write_text_atomic(store / PARTS_DIR / "settings.json", json.dumps(settings, indent=2))
    return _finished_parts(store)


def _remove_build(store: Path) -> None:
    """Delete a shard build's own files only: a folder given by mistake keeps everything else
    (and is then refused as not a shard build)."""
    for file in store.glob("chunk-*.bin"):
        file.unlink()
    for name in (LITDATA_INDEX, SHARD_RECORD, ERROR_LOG):
        (store / name).unlink(missing_ok=True)
    shutil.rmtree(store / PARTS_DIR, ignore_errors=True)


def _recorded_settings(store: Path) -> dict | None:
    for file in (store / PARTS_DIR / "settings.json", store / SHARD_RECORD):
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        return data.get("settings", data) if file.name == SHARD_RECORD else data
    return None


def _finished_parts(store: Path) -> list[dict]:
    """The parts of a build recorded as finished whose shard file is whole, in order; a part
    after a gap or a damaged shard is dropped (rewritten by the resumed build)."""
    parts: list[dict] = []
    record = store / SHARD_RECORD
    if record.is_file() and not (store / PARTS_DIR / "0.json").exists():
        parts_found: Iterable[dict] = _parts_of_record(json.loads(record.read_text()))
    else:
        parts_found = (
            json.loads(file.read_text())
            for file in sorted((store / PARTS_DIR).glob("[0-9]*.json"), key=lambda f: int(f.stem))
        )
    for part in parts_found:
        chunk = part["chunk"]
        file = store / chunk["filename"]
        if part["number"] != len(parts) or not file.is_file():
            break
        if file.stat().st_size != chunk["chunk_bytes"]:
            break
        parts.append(part)
    return parts


def _parts_of_record(record: dict) -> Iterator[dict]:
    """A finished build's parts, as :func:`_write_shard` recorded them."""
    start = 0
    for number, (shard, chunk) in enumerate(zip(record["shards"], record["chunks"], strict=True)):
        stop = start + shard["entries"]
        yield {
            "number": number,
            "keys": record["keys"][start:stop],
            "bytes": shard["bytes"],
            "chunk": chunk,
            "config": record["config"],
        }
        start = stop


def _write_shard(store: Path, number: int, items: list[tuple[str, bytes]]) -> dict:
    """One shard through litdata's writer; its record, in ``.parts/``, marks it finished."""
    from litdata.streaming.writer import BinaryWriter

    writer = BinaryWriter(str(store), chunk_bytes=_NO_LIMIT, chunk_index=number)
    for index, (key, value) in enumerate(items):
        writer[index] = {"key": key, "data": value}
    writer.done()
    worker_index = store / f"{writer.rank}.{LITDATA_INDEX}"
    written = json.loads(worker_index.read_text())
    worker_index.unlink()
    (chunk,) = written["chunks"]
    part = {
        "number": number,
        "keys": [key for key, _ in items],
        "bytes": sum(len(v) for _, v in items),
        "chunk": chunk,
        "config": written["config"],
    }
    write_text_atomic(store / PARTS_DIR / f"{number}.json", json.dumps(part))
    return part


def _finish(store: Path, parts: list[dict], settings: dict[str, Any]) -> None:
    """Write litdata's ``index.json`` and our record; the parts folder goes last."""
    index = {
        "chunks": [part["chunk"] for part in parts],
        "config": parts[0]["config"],
        "updated_at": str(time.time()),
    }
    record = {
        "format": 1,
        "settings": settings,
        "keys": [key for part in parts for key in part["keys"]],
        "shards": [
            {"file": p["chunk"]["filename"], "entries": len(p["keys"]), "bytes": p["bytes"]}
            for p in parts
        ],
        "chunks": index["chunks"],
        "config": index["config"],
    }
    write_text_atomic(store / LITDATA_INDEX, json.dumps(index, sort_keys=True))
    write_text_atomic(store / SHARD_RECORD, json.dumps(record))
    shutil.rmtree(store / PARTS_DIR, ignore_errors=True)
