"""inspect / validate / check / export on real stores of real media."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clipbert.data.decoding import build_decoder
from clipbert.data.lmdb_builder import build_vis_db
from clipbert.data.store_tools import (
    BROKEN_LOG,
    check_annotations,
    export_store,
    guess_extension,
    inspect_store,
    validate_store,
)
from clipbert.data.stores import LmdbStore
from tests.helpers import decoder_or_skip

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VIDEOS = {
    "clip_mp4": "h264_176x144_29.97fps_lowbitrate.mp4",
    "clip_avi": "mjpeg_160x120_10fps_3frames.avi",
    "clip_mkv": "h264_opus_426x240_30fps.mkv",
    "clip_webm": "vp9_opus_1280x720_noduration.webm",
    "clip_gif": "gif_14x25_24frames_tiny.gif",
    "clip_corrupt": "h264_1280x720_corrupt_nal.mp4",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> LmdbStore:
    src = tmp_path_factory.mktemp("src")
    for key, name in VIDEOS.items():
        shutil.copy(ASSETS / name, src / f"{key}{Path(name).suffix}")
    (src / "clip_fake.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real video")
    db = tmp_path_factory.mktemp("db") / "vis_db"
    build_vis_db(src, db, progress=False)
    return LmdbStore(db)


def test_inspect(store: LmdbStore) -> None:
    summary = inspect_store(store, samples=3)
    assert summary.entries == 7 and summary.sample_keys == ["clip_avi", "clip_corrupt", "clip_fake"]
    assert summary.total_bytes == sum((ASSETS / n).stat().st_size for n in VIDEOS.values()) + 29


@pytest.mark.parametrize(
    ("decoder", "broken"),
    [
        ("decord", {"clip_fake", "clip_corrupt", "clip_webm", "clip_gif"}),
        ("torchcodec", {"clip_fake", "clip_corrupt", "clip_avi"}),  # AVI: to the fallback
        ("pyav", {"clip_fake"}),
    ],
)
def test_validate_lists_what_the_decoder_cannot_read(
    store: LmdbStore, tmp_path: Path, decoder: str, broken: set[str]
) -> None:
    report = validate_store(
        store, "video", decoder_or_skip(decoder, fallback=None), tmp_path, progress=False
    )
    assert report.checked == 7 and set(report.broken) == broken
    assert all(decoder in reason for reason in report.broken.values())
    logged = (tmp_path / BROKEN_LOG).read_text().splitlines()
    assert {line.split("\t")[0] for line in logged} == broken


def test_validate_with_the_fallback_reports_only_the_unreadable(store: LmdbStore) -> None:
    report = validate_store(store, "video", build_decoder(), progress=False)  # auto + PyAV
    assert set(report.broken) == {"clip_fake"}
    primary = build_decoder(fallback=None).name
    assert primary in report.broken["clip_fake"] and "pyav" in report.broken["clip_fake"]


def test_check_lists_annotation_ids_missing_from_the_store(
    store: LmdbStore, tmp_path: Path
) -> None:
    qa = tmp_path / "qa.jsonl"
    rows = [{"video_id": "clip_mp4"}, {"gif_name": "clip_gif"}, {"video_id": "nowhere"}]
    qa.write_text("".join(json.dumps(r) + "\n" for r in rows))
    captions = tmp_path / "captions.jsonl"
    captions.write_text(json.dumps({"clip_name": "also_missing"}) + "\n")
    report = check_annotations(store, [qa, captions])
    assert report.ids == 4 and report.missing == ["nowhere", "also_missing"]
    assert "2 of 4" in report.summary()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "no id"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: no id field"):
        check_annotations(store, [bad])


def test_export_writes_the_bytes_back_with_their_extension(
    store: LmdbStore, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert export_store(store, out, progress=False) == 7
    for key, name in VIDEOS.items():
        ext = {".mov": "mp4"}.get(Path(name).suffix, Path(name).suffix.lstrip("."))
        assert (out / f"{key}.{ext}").read_bytes() == (ASSETS / name).read_bytes()
    assert export_store(store, out, progress=False) == 0  # existing files are left alone
    assert not list(out.glob("*.partial"))


def test_guess_extension() -> None:
    assert guess_extension((ASSETS / "photo_128x128_tiny.jpg").read_bytes()) == "jpg"
    assert guess_extension((ASSETS / "rgba_200x150.png").read_bytes()) == "png"
    assert guess_extension(b"plain text") == "bin"
