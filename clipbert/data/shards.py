"""Sharded visual stores: litdata's chunk format, on local disk or in S3-compatible storage.

A shard store is a folder (or an ``s3://bucket/prefix``) in Lightning ``litdata``'s optimized
layout (``index.json`` and ``chunk-0-<n>.bin`` files, each item ``{"key", "data"}``) plus
``clipbert_shards.json``, our record of the keys in item order. Reading goes through
``litdata.StreamingDataset``: a key is found in the record, and its bytes are read from the
shard that holds them (a local file read, or one HTTP range request), so the datasets'
sampling, seeded order and broken-video handling work on shards exactly as on an LMDB.

The build (:func:`write_shards`) writes one shard at a time and records each finished one in
``.parts/``, so an interrupted build, rerun, redoes only the shard it was writing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipbert.atomic_files import write_text_atomic
from clipbert.data.lmdb_builder import ERROR_LOG
from clipbert.data.stores import StoreNotEmptyError, UnreadableEntryError, VisualStore

SHARD_RECORD = "clipbert_shards.json"
LITDATA_INDEX = "index.json"
PARTS_DIR = ".parts"
REMOTE_SCHEMES = ("s3://",)
_NO_LIMIT = 1 << 62  # a chunk byte limit no shard reaches: the writer flushes one chunk at done()


def require_shards_extra() -> None:
    """Shard stores need litdata and boto3, the ``shards`` extra; say so by name."""
    import importlib.util

    missing = [m for m in ("litdata", "boto3") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"shard stores need {' and '.join(missing)}: pip install 'clipbert[shards]'"
        )


def is_remote(location: str | os.PathLike[str]) -> bool:
    return str(location).startswith(REMOTE_SCHEMES)


def is_shard_store(location: str | os.PathLike[str]) -> bool:
    """A remote URL, or a local folder holding a shard record."""
    return is_remote(location) or (Path(location).expanduser() / SHARD_RECORD).is_file()


@dataclass(frozen=True)
class RemoteSettings:
    """How to reach object storage (``task.datamodule.storage``). Unset values fall back on
    boto3's own sources: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
    ``AWS_PROFILE``, ``~/.aws/config``. Every request gives up after ``timeout_s`` seconds
    (connect and read) and ``retries`` retries, so a dead endpoint is an error, not a hang.
    ``cache_dir`` holds the downloaded index files (items are fetched by range request)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    timeout_s: float = 20.0
    retries: int = 2
    cache_dir: str = "~/.cache/clipbert/shards"

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"storage.timeout_s must be > 0 seconds, got {self.timeout_s}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"storage.retries must be an integer >= 0, got {self.retries!r}")

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None, key: str) -> RemoteSettings:
        """The config block at ``key`` (e.g. ``task.datamodule.storage``), errors naming it."""
        try:
            return cls(**(values or {}))
        except (TypeError, ValueError) as err:  # TypeError: an unknown key
            raise ValueError(f"{key}: {err}; fix it in the config or on the command line") from None

    def storage_options(self) -> dict[str, Any]:
        """boto3 client arguments (litdata passes them through)."""
        from botocore.config import Config

        options: dict[str, Any] = {
            "config": Config(
                connect_timeout=self.timeout_s,
                read_timeout=self.timeout_s,
                retries={"total_max_attempts": self.retries + 1, "mode": "standard"},
            )
        }
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.region:
            options["region_name"] = self.region
        return options

    def session_options(self) -> dict[str, Any]:
        return {"profile_name": self.profile} if self.profile else {}

    def client(self) -> Any:
        import boto3

        return boto3.Session(**self.session_options()).client("s3", **self.storage_options())


def object_key(prefix: str, name: str) -> str:
    """The key of ``name`` under ``prefix`` in a bucket (no leading slash at the root)."""
    return f"{prefix}/{name}" if prefix else name


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket; write it as s3://bucket/prefix")
    return bucket, prefix.strip("/")


class ShardStore(VisualStore):
    """Read-only key -> bytes over a shard store, local or remote.

    The record (keys in item order) is read when the store is opened, in the main process, so
    a wrong URL, endpoint or credentials fails there, naming the URL. Each process opens its
    own ``StreamingDataset`` on first read, so the store pickles into DataLoader workers.
    """

    def __init__(self, location: str | os.PathLike[str], remote: RemoteSettings | None = None):
        require_shards_extra()
        self.remote = remote or RemoteSettings()
        text = str(location)
        self.path = text.rstrip("/") if is_remote(text) else Path(text).expanduser().resolve()
        record = self._read_record()
        self._keys: list[str] = record["keys"]
        self._shard_of: list[str] = [
            shard["file"] for shard in record["shards"] for _ in range(shard["entries"])
        ]
        self._index = {key: i for i, key in enumerate(self._keys)}
        self._dataset: Any = None

    def _read_record(self) -> dict:
        if isinstance(self.path, Path):
            file = self.path / SHARD_RECORD
            if not file.is_file():
                raise FileNotFoundError(
                    f"no shard store at {self.path} (expected {SHARD_RECORD}); build one with "
                    "`python preprocess.py format=shards src=... dst=...`"
                )
            return json.loads(file.read_text())
        return json.loads(self._fetch(SHARD_RECORD))

    def _fetch(self, name: str) -> bytes:
        """One small object of the store, its errors naming the URL and what to check."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, prefix = split_url(self.path)
        url = f"{self.path}/{name}"
        try:
            response = self.remote.client().get_object(Bucket=bucket, Key=object_key(prefix, name))
            return response["Body"].read()
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NoSuchBucket"):
                what = (
                    "the bucket does not exist"
                    if code == "NoSuchBucket"
                    else "no shard store there"
                )
                raise FileNotFoundError(
                    f"cannot read {url} ({code}): {what}; check the URL, or upload the built "
                    "store with `python preprocess.py mode=upload`"
                ) from None
            raise PermissionError(
                f"cannot read {url} ({code}: {err}); check the credentials (AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or storage.profile) and their access to "
                "the bucket"
            ) from None
        except BotoCoreError as err:
            raise ConnectionError(
                f"cannot read {url} ({err}); check storage.endpoint_url (or AWS_ENDPOINT_URL) "
                f"and that the server is up (gave up after {self.remote.retries} retries of "
                f"{self.remote.timeout_s:g} s)"
            ) from None

    def _streaming(self) -> Any:
        if self._dataset is None:
            from litdata import StreamingDataset

            options: dict[str, Any] = {}
            if isinstance(self.path, str):
                _register_offset_table_cache()
                cache = Path(self.remote.cache_dir).expanduser()
                cache.mkdir(parents=True, exist_ok=True)
                options = {
                    "cache_dir": str(cache),
                    "storage_options": self.remote.storage_options(),
                    "session_options": self.remote.session_options(),
                }
            # the cap silences litdata's sizing notice: reads are range requests, and only the
            # index files are cached
            self._dataset = StreamingDataset(str(self.path), max_cache_size="100GB", **options)
        return self._dataset

    def get(self, key: str) -> bytes:
        index = self._index.get(key)
        if index is None:
            raise self._missing(key)
        shard = self._shard_of[index]
        try:
            item = self._streaming()[index]
        except Exception as err:  # the engine's errors vary by backend; all mean one thing
            raise UnreadableEntryError(
                f"visual key {key!r}: shard {self.path}/{shard} could not be read "
                f"({type(err).__name__}: {err}); check that the shard exists and is complete, "
                "or rebuild the store"
            ) from None
        if not isinstance(item, dict) or item.get("key") != key:
            raise UnreadableEntryError(
                f"visual key {key!r}: shard {self.path}/{shard} holds other data at its place; "
                "the shard is damaged or from another build: rebuild the store"
            )
        return bytes(item["data"])  # local shards give a view of the mapped file

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def keys(self) -> list[str]:
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_dataset": None}  # each process opens its own reader


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


def _register_offset_table_cache() -> None:
    """Serve litdata's per-sample offset reads from each shard's offset table, fetched once.

    litdata reads one sample of a remote chunk as two range requests: 8 bytes of the chunk's
    offset table, then the sample. The table (a count and ``n + 1`` uint32 offsets at the head
    of the chunk) is tiny and never changes, so this downloader, registered for ``s3://`` through
    litdata's public ``register_downloader``, fetches it whole on the first read of a chunk and
    answers the later offset reads from memory: one request per video instead of two. Every
    other read goes to litdata's own S3 downloader unchanged.
    """
    import threading

    from litdata.streaming.downloader import S3Downloader, register_downloader

    class OffsetTableCachingS3Downloader(S3Downloader):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._tables: dict[int, bytes] = {}
            self._tables_lock = threading.Lock()

        def download_chunk_bytes_from_index(
            self, chunk_index: int, offset: int, length: int
        ) -> bytes:
            table_end = 4 * (self._chunks[chunk_index]["chunk_size"] + 2)
            if offset + length > table_end:
                return super().download_chunk_bytes_from_index(chunk_index, offset, length)
            with self._tables_lock:
                table = self._tables.get(chunk_index)
            if table is None:
                table = super().download_chunk_bytes_from_index(chunk_index, 0, table_end)
                with self._tables_lock:
                    self._tables[chunk_index] = table
            return table[offset : offset + length]

    register_downloader("s3://", OffsetTableCachingS3Downloader, overwrite=True)
