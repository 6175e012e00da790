"""Open a ``vis_db`` by what it is: a shard store (local or ``s3://``), an LMDB, or a folder."""

from __future__ import annotations

import os
from pathlib import Path

from clipbert.data.object_storage import RemoteSettings
from clipbert.data.shards import ShardStore, is_shard_store
from clipbert.data.stores import LMDB_DATA_FILE, FolderStore, LmdbStore, VisualStore


def open_store(path: str | os.PathLike[str], remote: RemoteSettings | None = None) -> VisualStore:
    """Open ``path`` as a shard store if it is an ``s3://`` URL or holds a shard record, as an
    LMDB store if it holds ``data.mdb``, else as a folder store. ``remote``: how to reach
    object storage."""
    if is_shard_store(path):
        return ShardStore(path, remote)
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise FileNotFoundError(
            f"visual store {resolved} does not exist; set the vis_db path in the config, or "
            "build an LMDB store with `python preprocess.py`"
        )
    if not resolved.is_dir():
        raise NotADirectoryError(
            f"visual store {resolved} is a file; give the LMDB directory or the folder of "
            "videos/images instead"
        )
    if (resolved / LMDB_DATA_FILE).is_file():
        return LmdbStore(resolved)
    return FolderStore(resolved)


def is_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a built store (shards or LMDB) rather than a folder of files."""
    return is_shard_store(path) or (Path(path).expanduser() / LMDB_DATA_FILE).is_file()
