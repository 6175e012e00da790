"""Visual stores: one read interface over an LMDB ``vis_db`` or a plain folder of files.

Both map a key (the file stem, e.g. ``video7020``) to the raw bytes of the video or image, so
datasets never care where the bytes live. The LMDB layout is the original ClipBERT one:
key = ``str(stem).encode("utf-8")``, value = the file's bytes (images: JPEG bytes).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

import lmdb

LMDB_DATA_FILE = "data.mdb"
LMDB_LOCK_FILE = "lock.mdb"
_LMDB_FILES = frozenset({LMDB_DATA_FILE, LMDB_LOCK_FILE})

# py-lmdb refuses to open one path twice in a process, and an Environment must not be used
# across a fork, so every process keeps its own read-only env per path.
_READ_ENVS: dict[tuple[int, str], lmdb.Environment] = {}


class StoreNotEmptyError(FileExistsError):
    """The target of a store build already holds data."""


class UnreadableEntryError(KeyError):
    """The store lists the key but its bytes cannot be read (a missing or damaged shard, an
    unreachable server): a broken sample, handled like a missing key."""


class VisualStore(abc.ABC):
    """Read-only mapping from a visual key (file stem) to raw file bytes."""

    path: Path | str  # a local folder, or the URL of a remote store

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the bytes stored under ``key``; ``KeyError`` (with advice) when absent."""

    @abc.abstractmethod
    def __contains__(self, key: object) -> bool: ...

    @abc.abstractmethod
    def keys(self) -> list[str]:
        """All keys, sorted."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    def _missing(self, key: str) -> KeyError:
        return KeyError(
            f"visual key {key!r} not found in {type(self).__name__} at {self.path}; check that "
            "the annotation ids match the file stems of the videos/images, or rebuild the store "
            "with `python preprocess.py`"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class LmdbStore(VisualStore):
    """An LMDB ``vis_db`` as written by the original ClipBERT (or by :class:`LmdbWriter`).

    The environment is opened lazily on first use, once per process, so the store can be
    created in the main process and pickled into spawned or forked DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_readers: int = 1024) -> None:
        self.path = Path(path).expanduser().resolve()
        self.max_readers = max_readers
        if not (self.path / LMDB_DATA_FILE).is_file():
            raise FileNotFoundError(
                f"no LMDB store at {self.path} (expected a directory holding {LMDB_DATA_FILE}); "
                "build it with `python preprocess.py` or point the config at the right vis_db"
            )

    def _env(self) -> lmdb.Environment:
        cache_key = (os.getpid(), str(self.path))
        env = _READ_ENVS.get(cache_key)
        if env is None:
            _drop_inherited_envs()
            try:
                env = lmdb.open(
                    str(self.path),
                    readonly=True,
                    lock=False,
                    readahead=False,
                    create=False,
                    subdir=True,
                    max_readers=self.max_readers,
                )
            except lmdb.Error as exc:
                raise FileNotFoundError(
                    f"cannot open {self.path} as an LMDB store ({exc}); rebuild it with "
                    "`python preprocess.py`"
                ) from exc
            _READ_ENVS[cache_key] = env
        return env

    def get(self, key: str) -> bytes:
        if not key:
            raise self._missing(key)
        with self._env().begin() as txn:
            value = txn.get(_encode_key(key))
        if value is None:
            raise self._missing(key)
        return value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or not key:
            return False
        with self._env().begin() as txn:
            return txn.get(_encode_key(key)) is not None

    def keys(self) -> list[str]:
        with self._env().begin() as txn:
            return [k.decode("utf-8") for k in txn.cursor().iternext(keys=True, values=False)]

    def __len__(self) -> int:
        return int(self._env().stat()["entries"])

    def __getstate__(self) -> dict[str, object]:
        # Nothing process-bound lives on the instance (envs sit in the per-process cache), so
        # the plain attributes are all a worker needs to reopen the store.
        return {"path": self.path, "max_readers": self.max_readers}


class FolderStore(VisualStore):
    """A directory of video/image files used directly as a store (key = file stem).

    Handy for small datasets where building an LMDB is not worth it. The directory is scanned
    recursively once, at construction; hidden files and folders are ignored.
    """

    def __init__(
        self, root: str | os.PathLike[str], extensions: Sequence[str] | None = None
    ) -> None:
        self.path = Path(root).expanduser().resolve()
        if not self.path.is_dir():
            raise FileNotFoundError(f"folder store {self.path} is not an existing directory")
        self.extensions = normalize_extensions(extensions) if extensions is not None else None
        self._files, _ = scan_files(self.path, self.extensions)

    def get(self, key: str) -> bytes:
        try:
            file = self._files[key]
        except KeyError:
            raise self._missing(key) from None
        return file.read_bytes()

    def __contains__(self, key: object) -> bool:
        return key in self._files

    def keys(self) -> list[str]:
        return sorted(self._files)

    def __len__(self) -> int:
        return len(self._files)


class LmdbWriter:
    """Write an LMDB store in the original ClipBERT layout.

    Entries are committed every ``commit_every`` puts or ``commit_bytes`` of values, and on a
    clean exit. A commit is atomic: if the ``with`` body raises, or the process is killed, the
    pending batch is lost and every earlier commit stays readable, so a crashed build leaves a
    valid (partial) store rather than a corrupt one. ``resume`` opens a store that already has
    entries to add more (``key in writer`` tells what is there). The map starts at
    ``map_size`` and doubles whenever it is full.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        resume: bool = False,
        commit_every: int = 1000,
        commit_bytes: int = 256 << 20,
        map_size: int = 1 << 30,
        allowed_files: Sequence[str] = (),
    ) -> None:
        if commit_every < 1 or commit_bytes < 1:
            raise ValueError(f"commit_every and commit_bytes must be >= 1, got {commit_every}")
        self.path = Path(path).expanduser().resolve()
        self.overwrite = overwrite
        self.resume = resume
        self.commit_every = commit_every
        self.commit_bytes = commit_bytes
        self.map_size = map_size
        self.allowed_files = frozenset(allowed_files)  # e.g. the builder's own records
        self._env: lmdb.Environment | None = None
        self._txn: lmdb.Transaction | None = None
        self._written = 0
        self._batch: list[tuple[bytes, bytes]] = []  # uncommitted puts, replayed on growth
        self._batch_bytes = 0

    def __enter__(self) -> LmdbWriter:
        _drop_inherited_envs()
        self._prepare_dir()
        _forget_read_env(self.path)
        self._env = lmdb.open(str(self.path), map_size=self.map_size, subdir=True)
        self.map_size = max(self.map_size, self._env.info()["map_size"])  # a bigger old store
        self._txn = self._env.begin(write=True)
        return self

    def _prepare_dir(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"cannot build an LMDB store at {self.path}: it is a file")
        if not self.path.exists():
            self.path.mkdir(parents=True)
            return
        if self.overwrite:
            # Unlink rather than clear in place: readers that still map the old file keep a
            # consistent snapshot instead of seeing pages being reused.
            for name in _LMDB_FILES:
                (self.path / name).unlink(missing_ok=True)
            return
        known = _LMDB_FILES | self.allowed_files
        others = sorted(p.name for p in self.path.iterdir() if p.name not in known)
        entries = _count_entries(self.path) if (self.path / LMDB_DATA_FILE).exists() else 0
        if self.resume and entries is not None and not others:
            return
        if entries != 0 or others:
            if entries is None:
                what = f"an unreadable {LMDB_DATA_FILE}"
            elif entries:
                what = f"an LMDB store with {entries} entries"
            else:
                what = f"other files ({', '.join(others[:5])})"
            raise StoreNotEmptyError(
                f"{self.path} already holds {what}; choose an empty or new directory, or pass "
                "overwrite=true to replace the existing store"
            )

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is in the store (committed, or written in this batch)."""
        if self._txn is None:
            raise RuntimeError("LmdbWriter used outside its `with` block")
        return isinstance(key, str) and bool(key) and self._txn.get(_encode_key(key)) is not None

    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``; a key may be written only once."""
        if self._txn is None:
            raise RuntimeError("LmdbWriter.put() called outside its `with` block")
        encoded = _encode_key(key)
        try:
            added = self._put(encoded, value)
        except lmdb.BadValsizeError as exc:
            raise ValueError(f"key {key!r} is not usable as an LMDB key ({exc})") from exc
        if not added:
            raise ValueError(
                f"key {key!r} was already written to {self.path}; visual keys (file stems) "
                "must be unique"
            )
        self._written += 1
        self._batch.append((encoded, value))
        self._batch_bytes += len(value)
        if len(self._batch) >= self.commit_every or self._batch_bytes >= self.commit_bytes:
            self._commit()

    def _put(self, key: bytes, value: bytes) -> bool:
        """Put into the open transaction; when the map is full, double it and replay the
        batch (LMDB aborts the transaction that hit the limit)."""
        while True:
            try:
                return self._txn.put(key, value, overwrite=False)
            except lmdb.MapFullError:
                self._txn.abort()
                self._grow_and_replay()

    def _grow_and_replay(self) -> None:
        """Double the map and redo the uncommitted batch in a fresh transaction."""
        self.map_size *= 2
        self._env.set_mapsize(self.map_size)
        self._txn = self._env.begin(write=True)
        for key, value in self._batch:
            self._txn.put(key, value, overwrite=False)

    def _commit(self) -> None:
        assert self._txn is not None and self._env is not None
        while True:
            try:
                self._txn.commit()
                break
            except lmdb.MapFullError:  # the commit itself may need room for its pages
                self._grow_and_replay()  # a failed commit has already ended the transaction
        self._txn = self._env.begin(write=True)
        self._batch, self._batch_bytes = [], 0

    def __len__(self) -> int:
        return self._written

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._txn is not None:
                if exc_type is None:
                    self._commit()
                    self._txn.abort()  # the empty transaction _commit opened
                else:
                    self._txn.abort()
                    self._written -= len(self._batch)
        finally:
            self._txn = None
            self._batch, self._batch_bytes = [], 0
            if self._env is not None:
                self._env.close()
                self._env = None


def normalize_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    """Lower-case extensions without their leading dot (``".MP4"`` -> ``"mp4"``)."""
    if isinstance(extensions, str):
        extensions = [extensions]
    normalized = tuple(sorted({e.strip().lstrip(".").lower() for e in extensions} - {""}))
    if not normalized:
        raise ValueError(f"extensions must name at least one file extension, got {extensions!r}")
    return normalized


def scan_files(
    root: Path, extensions: Sequence[str] | None, duplicate_stems: str = "error"
) -> tuple[dict[str, Path], int]:
    """Index the files under ``root`` by stem, recursively, in sorted order.

    Returns the index and the number of files left out because of their extension. Hidden
    files and folders are ignored. Two files sharing a stem would share a key, so that is an
    error listing both, rather than the original's silent overwrite; with
    ``duplicate_stems="prefix"`` every key is the path under ``root`` without its extension.
    """
    if duplicate_stems not in ("error", "prefix"):
        raise ValueError(f"duplicate_stems must be 'error' or 'prefix', got {duplicate_stems!r}")
    files: dict[str, Path] = {}
    skipped = 0
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not file.is_file():
            continue
        if extensions is not None and file.suffix.lstrip(".").lower() not in extensions:
            skipped += 1
            continue
        key = rel.with_suffix("").as_posix() if duplicate_stems == "prefix" else file.stem
        if key in files:
            raise ValueError(
                f"two files share the stem {file.stem!r}, which is the store key: "
                f"{files[key]} and {file}; rename or remove one of them, or build with "
                "duplicate_stems=prefix (keys become paths like folder/stem)"
            )
        files[key] = file
    return files, skipped


def _encode_key(key: str) -> bytes:
    return str(key).encode("utf-8")


def _count_entries(path: Path) -> int | None:
    """Entries of the LMDB at ``path``; None when it cannot be read as one."""
    env = _READ_ENVS.get((os.getpid(), str(path)))
    if env is not None:
        return int(env.stat()["entries"])
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, create=False, subdir=True)
    except lmdb.Error:
        return None
    try:
        return int(env.stat()["entries"])
    finally:
        env.close()


def _drop_inherited_envs() -> None:
    """Close envs a forked child inherited from its parent.

    py-lmdb's "already open in this process" registry is copied by fork, so the child must
    release the parent's env before it can open the same path. Closing only unmaps the child's
    copy; the parent's env is unaffected.
    """
    pid = os.getpid()
    for cache_key in [k for k in _READ_ENVS if k[0] != pid]:
        _READ_ENVS.pop(cache_key).close()


def _forget_read_env(path: Path) -> None:
    """Close this process's cached reader for ``path`` so a writer may open it."""
    env = _READ_ENVS.pop((os.getpid(), str(path)), None)
    if env is not None:
        env.close()
