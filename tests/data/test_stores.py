"""LmdbStore / FolderStore / LmdbWriter against real files and plain py-lmdb."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import shutil
import sys
from pathlib import Path

import lmdb
import pytest

from clipbert.data.store_access import open_store
from clipbert.data.stores import (
    FolderStore,
    LmdbStore,
    LmdbWriter,
    StoreNotEmptyError,
    VisualStore,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
FILES = {
    "h264_176x144_29.97fps_lowbitrate": "h264_176x144_29.97fps_lowbitrate.mp4",
    "mjpeg_160x120_10fps_3frames": "mjpeg_160x120_10fps_3frames.avi",
    "photo_128x128_gray": "photo_128x128_gray.jpg",
}


def _write_lmdb(path: Path, items: dict[str, bytes], **kwargs) -> int:
    with LmdbWriter(path, **kwargs) as writer:
        for key, value in items.items():
            writer.put(key, value)
    return len(writer)


@pytest.fixture
def asset_bytes() -> dict[str, bytes]:
    return {stem: (ASSETS / name).read_bytes() for stem, name in FILES.items()}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "folder"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(FILES.values()):
        shutil.copy(ASSETS / name, (root / "sub" if i == 0 else root) / name)
    return root


@pytest.fixture(params=["lmdb", "folder"])
def store(request, tmp_path: Path, folder: Path, asset_bytes) -> VisualStore:
    if request.param == "folder":
        return FolderStore(folder)
    _write_lmdb(tmp_path / "db", asset_bytes)
    return LmdbStore(tmp_path / "db")


def test_store_interface(store: VisualStore, asset_bytes) -> None:
    assert len(store) == 3
    assert store.keys() == sorted(asset_bytes)
    for key, value in asset_bytes.items():
        assert key in store
        assert store.get(key) == value
    assert "absent" not in store
    assert "" not in store


def test_missing_key_message_names_key_and_store(store: VisualStore) -> None:
    with pytest.raises(KeyError) as info:
        store.get("video7020")
    message = str(info.value)
    assert "video7020" in message
    assert str(store.path) in message
    assert "annotation" in message


def test_lmdb_round_trip_uses_original_format(tmp_path: Path, asset_bytes) -> None:
    db = tmp_path / "db"
    assert _write_lmdb(db, asset_bytes, commit_every=2) == 3
    env = lmdb.open(str(db), readonly=True, lock=False, create=False)
    with env.begin() as txn:
        on_disk = {k: bytes(v) for k, v in txn.cursor()}
    env.close()
    assert on_disk == {str(k).encode("utf-8"): v for k, v in asset_bytes.items()}


def test_lmdb_store_reads_a_store_written_with_plain_lmdb(tmp_path: Path, asset_bytes) -> None:
    # What the original's file2lmdb.py produces: one env, stem bytes -> file bytes.
    db = tmp_path / "orig"
    env = lmdb.open(str(db), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for key, value in asset_bytes.items():
            txn.put(str(key).encode("utf-8"), value)
    env.close()
    store = open_store(db)
    assert isinstance(store, LmdbStore)
    keys = store.keys()
    assert keys == sorted(asset_bytes)
    assert {k: store.get(k) for k in keys} == asset_bytes


def test_open_store_picks_the_backend(tmp_path: Path, folder: Path, asset_bytes) -> None:
    assert isinstance(open_store(folder), FolderStore)
    _write_lmdb(tmp_path / "db", asset_bytes)
    assert isinstance(open_store(tmp_path / "db"), LmdbStore)
    with pytest.raises(FileNotFoundError, match="preprocess.py"):
        open_store(tmp_path / "nowhere")
    with pytest.raises(NotADirectoryError):
        open_store(ASSETS / "photo_128x128_gray.jpg")


def test_lmdb_store_on_a_non_lmdb_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="preprocess.py") as info:
        LmdbStore(tmp_path)
    assert str(tmp_path) in str(info.value)
    (tmp_path / "data.mdb").write_bytes(b"not an lmdb file" * 100)
    store = LmdbStore(tmp_path)
    with pytest.raises(FileNotFoundError, match="preprocess.py"):
        store.get("x")


def test_writer_refuses_a_non_empty_store(tmp_path: Path) -> None:
    db = tmp_path / "db"
    _write_lmdb(db, {"old": b"1", "older": b"2"})
    with pytest.raises(StoreNotEmptyError, match="overwrite=true") as info:
        _write_lmdb(db, {"new": b"3"})
    assert str(db) in str(info.value)
    assert LmdbStore(db).keys() == ["old", "older"]  # untouched

    assert _write_lmdb(db, {"new": b"3"}, overwrite=True) == 1
    assert LmdbStore(db).keys() == ["new"]


def test_writer_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(StoreNotEmptyError, match="notes.txt"):
        _write_lmdb(tmp_path, {"a": b"1"})
    assert isinstance(StoreNotEmptyError("x"), FileExistsError)


def test_writer_accepts_an_empty_directory_and_an_empty_store(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    assert _write_lmdb(db, {}) == 0
    assert len(LmdbStore(db)) == 0
    assert _write_lmdb(db, {"a": b"1"}) == 1


def test_writer_rejects_duplicate_and_empty_keys(tmp_path: Path) -> None:
    with LmdbWriter(tmp_path / "db") as writer:
        writer.put("a", b"1")
        with pytest.raises(ValueError, match="already written"):
            writer.put("a", b"2")
        with pytest.raises(ValueError, match="LMDB key"):
            writer.put("", b"3")
    assert LmdbStore(tmp_path / "db").get("a") == b"1"


def test_writer_keeps_committed_batches_on_error(tmp_path: Path) -> None:
    db = tmp_path / "db"
    with pytest.raises(RuntimeError, match="boom"), LmdbWriter(db, commit_every=2) as writer:
        for i in range(5):
            writer.put(f"k{i}", bytes([i]))
        raise RuntimeError("boom")
    assert len(writer) == 4  # two committed batches; the fifth put was aborted
    store = LmdbStore(db)
    assert store.keys() == ["k0", "k1", "k2", "k3"]
    assert store.get("k3") == b"\x03"


def test_reader_then_rebuild_in_one_process(tmp_path: Path) -> None:
    db = tmp_path / "db"
    _write_lmdb(db, {"a": b"old"})
    store = LmdbStore(db)
    assert store.get("a") == b"old"  # env now cached in this process
    _write_lmdb(db, {"a": b"new"}, overwrite=True)
    assert store.get("a") == b"new"


def test_folder_store_duplicate_stems(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "clip.mp4").write_bytes(b"1")
    (tmp_path / "y" / "clip.avi").write_bytes(b"2")
    with pytest.raises(ValueError, match="clip") as info:
        FolderStore(tmp_path)
    assert "clip.mp4" in str(info.value) and "clip.avi" in str(info.value)
    assert FolderStore(tmp_path, extensions=[".MP4"]).keys() == ["clip"]


def test_folder_store_extension_filter_and_hidden_files(folder: Path) -> None:
    (folder / ".DS_Store").write_bytes(b"junk")
    assert FolderStore(folder, extensions=["mp4", ".AVI"]).keys() == [
        "h264_176x144_29.97fps_lowbitrate",
        "mjpeg_160x120_10fps_3frames",
    ]
    assert "photo_128x128_gray" in FolderStore(folder)
    assert ".DS_Store" not in FolderStore(folder)


def test_lmdb_store_pickles_after_use_into_spawned_process(tmp_path: Path, asset_bytes) -> None:
    _write_lmdb(tmp_path / "db", asset_bytes)
    store = LmdbStore(tmp_path / "db")
    assert len(store) == 3  # opens the env in this process first
    clone = pickle.loads(pickle.dumps(store))
    assert clone.get("photo_128x128_gray") == asset_bytes["photo_128x128_gray"]
    with mp.get_context("spawn").Pool(1) as pool:
        assert pool.apply(store.get, ("photo_128x128_gray",)) == asset_bytes["photo_128x128_gray"]
        assert pool.apply(store.keys) == sorted(asset_bytes)


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_lmdb_store_in_forked_process(tmp_path: Path, asset_bytes) -> None:
    _write_lmdb(tmp_path / "db", asset_bytes)
    store = LmdbStore(tmp_path / "db")
    assert len(store) == 3
    with mp.get_context("fork").Pool(1) as pool:
        key = "mjpeg_160x120_10fps_3frames"
        assert pool.apply(store.get, (key,)) == asset_bytes[key]
    assert store.get(key) == asset_bytes[key]  # the parent's env still works


def test_writer_grows_a_full_map_and_resumes(tmp_path: Path) -> None:
    store = tmp_path / "grown"
    values = {f"v{i:03d}": bytes([i]) * 20_000 for i in range(40)}  # 800 KB into a 64 KiB map
    with LmdbWriter(store, map_size=1 << 16, commit_every=7) as writer:
        for key, value in list(values.items())[:30]:
            writer.put(key, value)
        assert writer.map_size > 1 << 16
    with pytest.raises(StoreNotEmptyError, match="30 entries"):
        LmdbWriter(store).__enter__()
    with LmdbWriter(store, resume=True, map_size=1 << 16) as writer:
        assert "v000" in writer and "v035" not in writer
        for key, value in list(values.items())[30:]:
            writer.put(key, value)
        with pytest.raises(ValueError, match="already written"):
            writer.put("v001", b"again")
    reader = LmdbStore(store)
    assert len(reader) == 40 and all(reader.get(k) == v for k, v in values.items())
