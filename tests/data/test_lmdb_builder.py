"""Building vis_db LMDB stores from folders of real videos and images."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import lmdb
import pytest
import torch
from PIL import Image

from clipbert.data.decoding import build_decoder, decode_image
from clipbert.data.lmdb_builder import ERROR_LOG, build_vis_db
from clipbert.data.reencode import ReencodeSettings
from clipbert.data.stores import LmdbStore, StoreNotEmptyError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VIDEOS = [
    "h264_176x144_29.97fps_lowbitrate.mp4",
    "mjpeg_160x120_10fps_3frames.avi",
    "h264_568x320_rot90_3frames.mov",
]
IMAGES = ["photo_128x128_gray.jpg", "photo_128x128_tiny.jpg", "rgba_200x150.png"]


def _populate(root: Path, names: list[str], subdir: str | None = None) -> Path:
    target = root / subdir if subdir else root
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(ASSETS / name, target / name)
    return root


def _read_raw(db: Path) -> dict[bytes, bytes]:
    env = lmdb.open(str(db), readonly=True, lock=False, create=False)
    try:
        with env.begin() as txn:
            return {bytes(k): bytes(v) for k, v in txn.cursor()}
    finally:
        env.close()


def test_video_store_holds_raw_bytes_by_stem(tmp_path: Path) -> None:
    src = _populate(tmp_path / "src", VIDEOS[:2])
    _populate(src, VIDEOS[2:], subdir="nested/deeper")
    (src / "captions.txt").write_text("not a video")
    db = tmp_path / "vis_db"
    report = build_vis_db(src, db, progress=False)

    assert report.written == 3 and report.failed == [] and report.skipped_extension == 1
    assert report.store_path == db.resolve()
    assert "wrote 3 entries" in report.summary()
    assert _read_raw(db) == {
        Path(name).stem.encode("utf-8"): (ASSETS / name).read_bytes() for name in VIDEOS
    }
    assert not (db / ERROR_LOG).exists()
    data = LmdbStore(db).get("mjpeg_160x120_10fps_3frames")
    assert build_decoder().read(data, lambda info: [0, 2]).shape == (2, 3, 120, 160)


def test_image_store_reencodes_to_jpeg_and_logs_failures(tmp_path: Path) -> None:
    src = _populate(tmp_path / "src", [*IMAGES, "broken_truncated.jpg"])
    db = tmp_path / "img_db"
    report = build_vis_db(src, db, file_type="image", progress=True)

    assert report.written == 3
    assert [Path(path).name for path, _ in report.failed] == ["broken_truncated.jpg"]
    assert "1 files could not be read" in report.summary()
    log = (db / ERROR_LOG).read_text()
    assert str(src.resolve() / "broken_truncated.jpg") in log

    store = LmdbStore(db)
    assert store.keys() == sorted(Path(name).stem for name in IMAGES)
    for name in IMAGES:
        value = store.get(Path(name).stem)
        assert value[:2] == b"\xff\xd8"  # JPEG
        with Image.open(io.BytesIO(value)) as stored:
            assert stored.format == "JPEG" and stored.mode == "RGB"
        with Image.open(ASSETS / name) as original:
            width, height = original.size
        assert decode_image(value).shape == (1, 3, height, width)


def test_jpeg_quality_is_used(tmp_path: Path) -> None:
    src = _populate(tmp_path / "src", ["photo_128x128_tiny.jpg"])
    low = build_vis_db(src, tmp_path / "q10", file_type="image", jpeg_quality=10, progress=False)
    high = build_vis_db(src, tmp_path / "q95", file_type="image", progress=False)
    assert low.written == high.written == 1
    size = {db: len(LmdbStore(tmp_path / db).get("photo_128x128_tiny")) for db in ("q10", "q95")}
    assert size["q10"] < size["q95"]


def test_extension_filter_is_case_insensitive(tmp_path: Path) -> None:
    src = _populate(tmp_path / "src", VIDEOS)
    (src / VIDEOS[0]).rename(src / "CLIP.MP4")
    report = build_vis_db(src, tmp_path / "db", extensions=["mp4", ".MOV"], progress=False)
    assert report.written == 2 and report.skipped_extension == 1
    assert LmdbStore(tmp_path / "db").keys() == ["CLIP", "h264_568x320_rot90_3frames"]


def test_duplicate_stems_fail_before_writing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _populate(src, VIDEOS[:1], subdir="a")
    shutil.copy(ASSETS / VIDEOS[1], src / (Path(VIDEOS[0]).stem + ".avi"))
    db = tmp_path / "db"
    with pytest.raises(ValueError, match="h264_176x144") as info:
        build_vis_db(src, db, progress=False)
    assert ".mp4" in str(info.value) and ".avi" in str(info.value)
    assert not db.exists()


def test_refuses_a_non_empty_store_unless_overwrite(tmp_path: Path) -> None:
    db = tmp_path / "db"
    build_vis_db(
        _populate(tmp_path / "imgs", ["photo_128x128_gray.jpg", "broken_truncated.jpg"]),
        db,
        file_type="image",
        progress=False,
    )
    assert (db / ERROR_LOG).exists()
    videos = _populate(tmp_path / "videos", VIDEOS[:1])
    with pytest.raises(StoreNotEmptyError, match="overwrite=true"):
        build_vis_db(videos, db, progress=False)

    report = build_vis_db(videos, db, overwrite=True, progress=False)
    assert report.written == 1
    assert LmdbStore(db).keys() == [Path(VIDEOS[0]).stem]
    assert not (db / ERROR_LOG).exists()  # the old build's log went with it


def test_no_matching_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="mp4") as info:
        build_vis_db(src, tmp_path / "db", progress=False)
    assert str(src) in str(info.value)
    with pytest.raises(FileNotFoundError):
        build_vis_db(tmp_path / "missing", tmp_path / "db", progress=False)
    with pytest.raises(ValueError, match="file_type"):
        build_vis_db(src, tmp_path / "db", file_type="audio", progress=False)


def test_prefixed_keys_tell_equal_stems_apart(tmp_path: Path) -> None:
    src = _populate(tmp_path / "src", VIDEOS[:1], subdir="a")
    _populate(src, VIDEOS[:1], subdir="b/c")
    with pytest.raises(ValueError, match="duplicate_stems=prefix"):
        build_vis_db(src, tmp_path / "error", progress=False)
    build_vis_db(src, tmp_path / "db", duplicate_stems="prefix", progress=False)
    stem = Path(VIDEOS[0]).stem
    assert sorted(LmdbStore(tmp_path / "db").keys()) == [f"a/{stem}", f"b/c/{stem}"]


def test_workers_build_the_same_store(tmp_path: Path) -> None:
    src = _populate(tmp_path / "src", [*IMAGES, "broken_truncated.jpg"])
    serial = build_vis_db(src, tmp_path / "serial", file_type="image", progress=False)
    parallel = build_vis_db(
        src, tmp_path / "parallel", file_type="image", workers=2, progress=False
    )
    assert serial.written == parallel.written == 3 and len(parallel.failed) == 1
    assert _read_raw(tmp_path / "serial") == _read_raw(tmp_path / "parallel")


def test_a_rerun_adds_only_new_files(tmp_path: Path) -> None:
    src = _populate(tmp_path / "src", VIDEOS[:2])
    db = tmp_path / "db"
    assert build_vis_db(src, db, progress=False).written == 2
    _populate(src, VIDEOS[2:])
    report = build_vis_db(src, db, progress=False)
    assert (report.written, report.already_present) == (1, 2)
    assert len(_read_raw(db)) == 3


def test_raw_image_format_stores_each_file_as_it_is(tmp_path: Path) -> None:
    src = _populate(tmp_path / "src", [*IMAGES, "broken_truncated.jpg"])
    db = tmp_path / "raw_db"
    report = build_vis_db(src, db, file_type="image", image_format="raw", progress=False)
    assert report.written == 3
    assert [Path(path).name for path, _ in report.failed] == ["broken_truncated.jpg"]
    raw = _read_raw(db)
    for name in IMAGES:
        stored = raw[Path(name).stem.encode()]
        assert stored == (ASSETS / name).read_bytes()  # lossless: PNG stays PNG
        assert torch.equal(decode_image(stored), decode_image((ASSETS / name).read_bytes()))
    with pytest.raises(ValueError, match="image_format must be one of jpeg, raw"):
        build_vis_db(src, tmp_path / "x", file_type="image", image_format="png")


def test_reencoded_video_store_resumes_only_with_the_same_settings(tmp_path: Path) -> None:
    src = _populate(tmp_path / "src", ["h264_176x144_29.97fps_lowbitrate.mp4"])
    db = tmp_path / "db"
    settings = ReencodeSettings(fps=5, short_side=96)
    assert build_vis_db(src, db, reencode=settings, progress=False).written == 1
    info: list = []
    frames = build_decoder(fallback=None).read(
        LmdbStore(db).get("h264_176x144_29.97fps_lowbitrate"),
        lambda i: info.append(i) or [0, i.num_frames - 1],
    )
    assert frames.shape[-2:] == (96, 118)  # 176x144 -> shorter side 96, even width
    assert info[0].fps == pytest.approx(5.0) and 19 <= info[0].num_frames <= 21  # 4 s at 5 fps
    _populate(src, ["mjpeg_160x120_10fps_3frames.avi"])
    report = build_vis_db(src, db, reencode=settings, progress=False)
    assert (report.written, report.already_present) == (1, 1)
    with pytest.raises(StoreNotEmptyError, match="other settings"):
        build_vis_db(src, db, reencode=ReencodeSettings(fps=10), progress=False)
    with pytest.raises(StoreNotEmptyError, match="other settings"):
        build_vis_db(src, db, progress=False)  # the raw-bytes build is another store
    # no-op settings are the original's raw bytes
    plain = build_vis_db(src, tmp_path / "plain", reencode=ReencodeSettings(), progress=False)
    assert plain.written == 2
    assert (
        _read_raw(tmp_path / "plain")[b"mjpeg_160x120_10fps_3frames"]
        == (ASSETS / "mjpeg_160x120_10fps_3frames.avi").read_bytes()
    )
