"""Sharded visual stores: litdata's chunk format, on local disk or in S3-compatible storage.

A shard store is a folder (or an ``s3://bucket/prefix``) in Lightning ``litdata``'s optimized
layout (``index.json`` and ``chunk-0-<n>.bin`` files, each item ``{"key", "data"}``) plus
``clipbert_shards.json``, our record of the keys in item order. Reading goes through
``litdata.StreamingDataset``: a key is found in the record, and its bytes are read from the
shard that holds them (a local file read, or one HTTP range request), so the datasets'
sampling, seeded order and broken-video handling work on shards exactly as on an LMDB.

:mod:`clipbert.data.shard_writer` writes such a store; :mod:`clipbert.data.object_storage`
says how to reach the server.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
from pathlib import Path
from typing import Any

from clipbert.data.object_storage import RemoteSettings, is_remote, object_key, split_url
from clipbert.data.stores import UnreadableEntryError, VisualStore

SHARD_RECORD = "clipbert_shards.json"
LITDATA_INDEX = "index.json"


def require_shards_extra() -> None:
    """Shard stores need litdata and boto3, the ``shards`` extra; say so by name."""
    import importlib.util

    missing = [m for m in ("litdata", "boto3") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"shard stores need {' and '.join(missing)}: pip install 'clipbert[shards]'"
        )


def is_shard_store(location: str | os.PathLike[str]) -> bool:
    """A remote URL, or a local folder holding a shard record."""
    return is_remote(location) or (Path(location).expanduser() / SHARD_RECORD).is_file()


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
        self._shards: list[str] = [shard["file"] for shard in record["shards"]]
        self._shard_ends = list(itertools.accumulate(s["entries"] for s in record["shards"]))
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
        shard = self._shards[bisect.bisect_right(self._shard_ends, index)]
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
