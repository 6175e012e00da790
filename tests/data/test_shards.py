"""Shard stores: built from real files or an LMDB with litdata's writer, resumed after an
interruption, read back byte for byte from local disk and from a real S3-compatible server on
loopback, and failing clearly (naming the shard or URL, within the timeout) when broken."""

from __future__ import annotations

import json
import pickle
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

pytest.importorskip("litdata", reason="shard stores need the [shards] extra")
pytest.importorskip("moto", reason="the S3 server of the tests is moto (the dev extra)")

from clipbert.data.lmdb_builder import FileSource, build_vis_db
from clipbert.data.object_storage import RemoteSettings
from clipbert.data.shard_builder import build_shards, parse_size, shard_store_copy, upload_shards
from clipbert.data.shard_writer import write_shards
from clipbert.data.shards import LITDATA_INDEX, SHARD_RECORD, ShardStore
from clipbert.data.store_access import open_store
from clipbert.data.stores import LmdbStore, StoreNotEmptyError, UnreadableEntryError
from tests.s3_server import s3_server, user_credentials

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _asset_bytes() -> dict[str, bytes]:
    return {f.stem: f.read_bytes() for f in sorted(ASSETS.iterdir()) if f.suffix != ".md"}


@pytest.fixture
def built(tmp_path: Path) -> Path:
    source = FileSource.scan(ASSETS, file_type="video", extensions=["mp4", "mov", "mkv", "avi"])
    report = build_shards(source, tmp_path / "shards", shard_bytes=300_000, progress=False)
    assert report.written == len(source.files) and not report.failed
    return tmp_path / "shards"


def test_a_built_store_reads_back_every_file_byte_for_byte(built: Path) -> None:
    store = open_store(built)
    assert isinstance(store, ShardStore)
    files = {
        f.stem: f.read_bytes()
        for f in ASSETS.iterdir()
        if f.suffix in (".mp4", ".mov", ".mkv", ".avi")
    }
    assert store.keys() == sorted(files) and len(store) == len(files)
    for key in reversed(store.keys()):  # any order: random access
        assert store.get(key) == files[key]
    record = json.loads((built / SHARD_RECORD).read_text())
    assert len(record["shards"]) > 1  # the size limit split it
    assert "h264_1920x1080_vfr_72frames" in store and "nothing" not in store
    with pytest.raises(KeyError, match="nothing"):
        store.get("nothing")


def test_litdata_reads_the_store_as_its_own(built: Path) -> None:
    from litdata import StreamingDataset

    dataset = StreamingDataset(str(built), max_cache_size="1GB")
    keys = json.loads((built / SHARD_RECORD).read_text())["keys"]
    assert [dataset[i]["key"] for i in range(len(dataset))] == keys


def test_an_lmdb_converts_to_shards_unchanged(tmp_path: Path) -> None:
    build_vis_db(ASSETS, tmp_path / "lmdb", file_type="image", progress=False)
    lmdb = LmdbStore(tmp_path / "lmdb")
    shard_store_copy(lmdb, tmp_path / "shards", shard_bytes=10_000, progress=False)
    shards = open_store(tmp_path / "shards")
    assert shards.keys() == lmdb.keys()
    assert all(shards.get(k) == lmdb.get(k) for k in lmdb.keys())  # noqa: SIM118 (a store, not a dict)


def test_an_interrupted_build_resumes_without_redoing_finished_shards(tmp_path: Path) -> None:
    items = {f"k{i:03d}": bytes([i]) * 1000 for i in range(30)}
    settings = {"src": "test"}

    def interrupted():
        for n, pair in enumerate(items.items()):
            if n == 17:
                raise KeyboardInterrupt
            yield pair

    with pytest.raises(KeyboardInterrupt):
        write_shards(interrupted(), tmp_path, shard_bytes=5000, settings=settings)
    assert not (tmp_path / LITDATA_INDEX).exists()  # not a store yet
    finished = sorted(p.name for p in tmp_path.glob("chunk-*.bin"))
    assert len(finished) == 3  # 15 entries in 3 shards; the 2 pending ones were lost
    stamps = {name: (tmp_path / name).stat().st_mtime_ns for name in finished}

    offered = []

    def counted():
        for pair in items.items():
            offered.append(pair[0])
            yield pair

    build = write_shards(counted(), tmp_path, shard_bytes=5000, settings=settings)
    assert build.already_present == 15 and build.written == 15 and build.shards == 6
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in finished} == stamps
    store = ShardStore(tmp_path)
    assert [store.get(k) for k in items] == list(items.values())
    # a rerun of a finished build adds nothing and keeps the store readable
    again = write_shards(iter(items.items()), tmp_path, shard_bytes=5000, settings=settings)
    assert again.written == 0 and again.already_present == 30
    assert ShardStore(tmp_path).get("k029") == items["k029"]


def test_a_build_refuses_other_settings_a_foreign_folder_and_repeated_keys(
    tmp_path: Path,
) -> None:
    write_shards(iter([("a", b"1")]), tmp_path / "s", shard_bytes=10, settings={"src": "x"})
    with pytest.raises(StoreNotEmptyError, match="other settings"):
        write_shards(iter([("a", b"1")]), tmp_path / "s", shard_bytes=10, settings={"src": "y"})
    write_shards(
        iter([("b", b"2")]), tmp_path / "s", shard_bytes=10, settings={"src": "y"}, overwrite=True
    )
    assert ShardStore(tmp_path / "s").keys() == ["b"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # overwrite replaces a shard build, never other files
        with pytest.raises(StoreNotEmptyError, match="not a shard build"):
            write_shards(
                iter([("a", b"1")]),
                tmp_path / "other",
                shard_bytes=10,
                settings={},
                overwrite=overwrite,
            )
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="'a' was given twice"):
        write_shards(iter([("a", b"1"), ("a", b"2")]), tmp_path / "t", shard_bytes=10, settings={})


def test_shard_sizes_parse_and_bad_ones_are_named() -> None:
    assert parse_size("64MB") == 64_000_000 and parse_size("1GiB") == 2**30
    assert parse_size(4096) == 4096 and parse_size("1.5KB") == 1500
    with pytest.raises(ValueError, match="'lots' is not a size"):
        parse_size("lots")


def test_the_store_pickles_into_dataloader_workers(built: Path) -> None:
    store = open_store(built)
    keys = store.keys()
    loader = DataLoader(keys, batch_size=None, num_workers=2, collate_fn=store.get)
    assert list(loader) == [store.get(k) for k in keys]
    assert pickle.loads(pickle.dumps(store)).keys() == keys


def test_a_truncated_or_missing_shard_is_an_unreadable_entry_naming_it(built: Path) -> None:
    store = open_store(built)
    keys = store.keys()
    record = json.loads((built / SHARD_RECORD).read_text())
    first = record["shards"][0]["file"]
    in_first = record["keys"][0]
    data = (built / first).read_bytes()
    (built / first).write_bytes(data[: len(data) // 3])
    fresh = ShardStore(built)
    with pytest.raises(UnreadableEntryError, match=first):
        fresh.get(record["keys"][record["shards"][0]["entries"] - 1])
    (built / first).unlink()
    with pytest.raises(UnreadableEntryError, match=first):
        ShardStore(built).get(in_first)
    last = record["keys"][-1]
    assert ShardStore(built).get(last) == store.get(last)  # the other shards still read
    assert keys


def test_a_missing_store_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="preprocess.py format=shards"):
        ShardStore(tmp_path)


@pytest.fixture
def remote(s3_endpoint: str, tmp_path: Path) -> RemoteSettings:
    return RemoteSettings(endpoint_url=s3_endpoint, cache_dir=str(tmp_path / "cache"))


def test_an_uploaded_store_reads_back_from_the_server(
    built: Path, remote: RemoteSettings, tmp_path: Path
) -> None:
    remote.client().create_bucket(Bucket="unit")
    assert upload_shards(built, "s3://unit/a/videos", remote, progress=False) > 2
    store = open_store("s3://unit/a/videos", remote)
    local = open_store(built)
    assert isinstance(store, ShardStore) and store.keys() == local.keys()
    for key in local.keys():  # noqa: SIM118
        assert store.get(key) == local.get(key)
    # a rerun uploads only the index files: the shards are there at their size
    assert upload_shards(built, "s3://unit/a/videos", remote, progress=False) == 2
    # items are range requests: the cache holds index files only
    cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert cached and all(p.name.startswith(LITDATA_INDEX) for p in cached)
    loader = DataLoader(store.keys(), batch_size=None, num_workers=2, collate_fn=store.get)
    assert list(loader) == [local.get(k) for k in local.keys()]  # noqa: SIM118


def test_a_shard_missing_on_the_server_is_an_unreadable_entry(
    built: Path, remote: RemoteSettings
) -> None:
    remote.client().create_bucket(Bucket="gone")
    upload_shards(built, "s3://gone/v", remote, progress=False)
    record = json.loads((built / SHARD_RECORD).read_text())
    shard = record["shards"][0]["file"]
    remote.client().delete_object(Bucket="gone", Key=f"v/{shard}")
    store = open_store("s3://gone/v", remote)
    with pytest.raises(UnreadableEntryError, match=f"s3://gone/v/{shard}"):
        store.get(record["keys"][0])
    assert store.get(record["keys"][-1]) == open_store(built).get(record["keys"][-1])


def test_wrong_urls_credentials_and_a_dead_endpoint_fail_clearly_and_quickly(
    remote: RemoteSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote.client().create_bucket(Bucket="there")
    with pytest.raises(FileNotFoundError, match="s3://nobucket/x/clipbert_shards.json.*bucket"):
        open_store("s3://nobucket/x", remote)
    with pytest.raises(FileNotFoundError, match="s3://there/none/clipbert_shards.json.*no shard"):
        open_store("s3://there/none", remote)
    dead = RemoteSettings(endpoint_url="http://127.0.0.1:9", timeout_s=1, retries=1)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:9.*endpoint_url"):
        open_store("s3://there/x", dead)
    assert time.monotonic() - started < 10
    with pytest.raises(ValueError, match="storage.timeout_s"):
        RemoteSettings(timeout_s=0)
    with pytest.raises(ValueError, match="names no bucket"):
        open_store("s3:///x", remote)


def test_upload_refuses_an_unfinished_build(tmp_path: Path, remote: RemoteSettings) -> None:
    with pytest.raises(FileNotFoundError, match="not a finished shard store"):
        upload_shards(tmp_path, "s3://any/x", remote)


def test_a_copy_of_the_store_elsewhere_reads_the_same(built: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(built, moved)
    assert open_store(moved).keys() == open_store(built).keys()


def _recorded_requests(endpoint: str, action: str) -> list[dict]:
    """moto's request recorder: reset, start, stop, or (``download``) what it recorded."""
    if action == "download":
        with urllib.request.urlopen(f"{endpoint}/moto-api/recorder/download-recording") as reply:
            return [json.loads(line) for line in reply.read().decode().splitlines() if line]
    request = urllib.request.Request(
        f"{endpoint}/moto-api/recorder/{action}-recording", method="POST"
    )
    urllib.request.urlopen(request).close()
    return []


def test_a_remote_video_costs_one_range_request(
    built: Path, remote: RemoteSettings, s3_endpoint: str
) -> None:
    remote.client().create_bucket(Bucket="count")
    upload_shards(built, "s3://count/v", remote, progress=False)
    record = json.loads((built / SHARD_RECORD).read_text())
    in_first_shard = record["keys"][: record["shards"][0]["entries"]]
    store = open_store("s3://count/v", remote)
    store.get(in_first_shard[0])  # opens the index
    _recorded_requests(s3_endpoint, "reset")
    _recorded_requests(s3_endpoint, "start")
    for key in in_first_shard[1:]:
        store.get(key)
    _recorded_requests(s3_endpoint, "stop")
    gets = [r for r in _recorded_requests(s3_endpoint, "download") if r["method"] == "GET"]
    assert len(gets) == len(in_first_shard) - 1  # the shard's offset table came with the first


def test_a_store_at_the_root_of_a_bucket(built: Path, remote: RemoteSettings) -> None:
    remote.client().create_bucket(Bucket="rootstore")
    upload_shards(built, "s3://rootstore", remote, progress=False)
    store = open_store("s3://rootstore/", remote)
    assert store.keys() == open_store(built).keys()
    key = store.keys()[0]
    assert store.get(key) == open_store(built).get(key)


def test_wrong_credentials_are_named_when_the_store_opens(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with s3_server(check_credentials=True) as server:
        key_id, secret = user_credentials(server.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        remote = RemoteSettings(endpoint_url=server.endpoint, cache_dir=str(tmp_path / "cache"))
        remote.client().create_bucket(Bucket="locked")
        upload_shards(built, "s3://locked/v", remote, progress=False)
        assert open_store("s3://locked/v", remote).keys() == open_store(built).keys()
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        with pytest.raises(
            PermissionError, match="s3://locked/v.*SignatureDoesNotMatch.*credentials"
        ):
            open_store("s3://locked/v", remote)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOBODY")
        with pytest.raises(PermissionError, match="InvalidAccessKeyId"):
            open_store("s3://locked/v", remote)
