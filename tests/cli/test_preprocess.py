"""preprocess.py: a folder of videos -> an LMDB in the original's format, via the real CLI."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import lmdb
import numpy as np
import pytest
from PIL import Image

from clipbert.cli.preprocess import preprocess
from tests.helpers import REPO, compose_config, run_script

ASSETS = REPO / "tests" / "assets"


def run_preprocess(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_script("preprocess.py", *overrides, cwd=cwd, timeout=120)


def test_videos_to_lmdb_with_extension_filter(tmp_path: Path) -> None:
    src = tmp_path / "videos"
    (src / "nested").mkdir(parents=True)
    shutil.copy(ASSETS / "h264_176x144_29.97fps_lowbitrate.mp4", src / "clip_a.mp4")
    shutil.copy(ASSETS / "mjpeg_160x120_10fps_3frames.avi", src / "nested" / "clip_b.avi")
    shutil.copy(ASSETS / "h264_opus_426x240_30fps.mkv", src / "clip_c.mkv")
    dst = tmp_path / "vis_db"

    result = run_preprocess(f"src={src}", f"dst={dst}", "ext=[mp4,avi]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    with lmdb.open(str(dst), readonly=True, lock=False) as env, env.begin() as txn:
        keys = sorted(k.decode() for k in txn.cursor().iternext(values=False))
        assert keys == ["clip_a", "clip_b"]  # the mkv is filtered out
        assert txn.get(b"clip_b") == (src / "nested" / "clip_b.avi").read_bytes()

    again = run_preprocess(f"src={src}", f"dst={dst}", "ext=[mp4,avi]", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # the same build: resumes, nothing to add
    assert "wrote 0 entries" in again.stdout and "2 were already there" in again.stdout

    other = run_preprocess(f"src={src}", f"dst={dst}", cwd=tmp_path)  # other extensions
    assert other.returncode != 0
    assert "other settings" in other.stderr and "overwrite=true" in other.stderr

    forced = run_preprocess(f"src={src}", f"dst={dst}", "overwrite=true", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    with lmdb.open(str(dst), readonly=True, lock=False) as env:
        assert env.stat()["entries"] == 3


def _entries(db: Path) -> int:
    if not (db / "data.mdb").is_file():
        return 0
    with lmdb.open(str(db), readonly=True, lock=False) as env:
        return env.stat()["entries"]


def _same_image_400_times(src: Path) -> None:
    """400 copies of one noisy JPEG: re-encoding each takes a few ms, so a build runs for
    seconds and can be killed part-way."""
    src.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (384, 384, 3), dtype=np.uint8)
    Image.fromarray(noise).save(src / "img_0000.jpg", quality=95)
    for i in range(1, 400):
        shutil.copy(src / "img_0000.jpg", src / f"img_{i:04d}.jpg")


def _kill_build_when(args: list[str], cwd: Path, done: Callable[[], bool]) -> None:
    """Start `preprocess.py args`, SIGKILL it once ``done()`` holds (or it ends, or 60 s)."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "preprocess.py"), *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not done() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def test_killed_build_resumes_to_a_complete_valid_store(tmp_path: Path) -> None:
    """SIGKILL part-way through, rerun: every file once, byte-exact, and `validate` clean."""
    src = tmp_path / "images"
    _same_image_400_times(src)
    dst = tmp_path / "vis_db"
    args = [f"src={src}", f"dst={dst}", "file_type=image", "commit_every=20"]
    _kill_build_when(args, tmp_path, lambda: _entries(dst) >= 40)
    interrupted = _entries(dst)
    assert 40 <= interrupted < 400, "the build was not caught part-way"
    assert interrupted % 20 == 0  # whole commits only

    resumed = run_preprocess(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{interrupted} were already there" in resumed.stdout
    with lmdb.open(str(dst), readonly=True, lock=False) as env, env.begin() as txn:
        keys = [k.decode() for k in txn.cursor().iternext(values=False)]
        values = {bytes(v) for v in txn.cursor().iternext(keys=False)}
    assert keys == sorted(f"img_{i:04d}" for i in range(400))
    assert len(values) == 1  # one source image: every entry holds the same JPEG bytes
    validated = run_preprocess("mode=validate", f"dst={dst}", "file_type=image", cwd=tmp_path)
    assert validated.returncode == 0 and "all 400 entries decode" in validated.stdout


def test_reencoded_videos_and_raw_images_through_the_cli(tmp_path: Path) -> None:
    videos, images = tmp_path / "videos", tmp_path / "images"
    videos.mkdir()
    images.mkdir()
    shutil.copy(ASSETS / "h264_1920x1080_vfr_72frames.mp4", videos / "big.mp4")
    shutil.copy(ASSETS / "rgba_200x150.png", images / "pic.png")
    small = tmp_path / "small_db"
    result = run_preprocess(
        f"src={videos}", f"dst={small}", "reencode.fps=6", "reencode.short_side=144", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    with lmdb.open(str(small), readonly=True, lock=False) as env, env.begin() as txn:
        stored = txn.get(b"big")
    assert len(stored) < (videos / "big.mp4").stat().st_size / 10
    valid = run_preprocess("mode=validate", f"dst={small}", cwd=tmp_path)
    assert valid.returncode == 0 and "all 1 entries decode" in valid.stdout, valid.stdout

    raw = tmp_path / "img_db"
    result = run_preprocess(
        f"src={images}", f"dst={raw}", "file_type=image", "image_format=raw", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    with lmdb.open(str(raw), readonly=True, lock=False) as env, env.begin() as txn:
        assert txn.get(b"pic") == (images / "pic.png").read_bytes()


def _finished_shards(dst: Path) -> int:
    return len(list((dst / ".parts").glob("[0-9]*.json"))) if (dst / ".parts").is_dir() else 0


def test_shards_killed_mid_build_resume_then_upload_and_inspect_from_s3(
    tmp_path: Path, s3_endpoint: str
) -> None:
    """format=shards under SIGKILL, rerun, then the same store tools on it locally and at
    s3://, after mode=upload."""
    src = tmp_path / "images"
    _same_image_400_times(src)
    dst = tmp_path / "shards"
    args = [f"src={src}", f"dst={dst}", "file_type=image", "format=shards", "shard_size=2MB"]
    _kill_build_when(args, tmp_path, lambda: _finished_shards(dst) >= 2)
    finished = _finished_shards(dst)
    assert finished >= 2 and not (dst / "index.json").exists(), "not caught part-way"

    resumed = run_preprocess(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    counts = re.search(r"wrote (\d+) entries .*; (\d+) were already there", resumed.stdout)
    assert counts and int(counts[1]) + int(counts[2]) == 400 and int(counts[2]) > 0
    checked = preprocess(
        compose_config("preprocess", ["mode=validate", f"dst={dst}", "file_type=image"])
    )
    assert checked.summary() == "all 400 entries decode"

    url = "s3://cli/images"
    storage = f"storage.endpoint_url={s3_endpoint}"

    def at_s3(*overrides: str):
        return preprocess(compose_config("preprocess", [*overrides, storage]))

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="cli")
    assert at_s3("mode=upload", f"dst={dst}", f"out={url}") > 2
    assert at_s3("mode=inspect", f"dst={url}").entries == 400
    annotations = tmp_path / "train.jsonl"
    annotations.write_text('{"image_id": "img_0007"}\n{"image_id": "img_9999"}\n')
    assert at_s3("mode=check", f"dst={url}", f"annotations=[{annotations}]").missing == ["img_9999"]
    assert at_s3("mode=export", f"dst={url}", f"out={tmp_path / 'out'}") == 400
    assert (tmp_path / "out" / "img_0399.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:9"):
        preprocess(
            compose_config(
                "preprocess",
                [
                    "mode=inspect",
                    f"dst={url}",
                    "storage.endpoint_url=http://127.0.0.1:9",
                    "storage.timeout_s=1",
                    "storage.retries=0",
                ],
            )
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["format=parquet", "src=x"], "format must be one of lmdb, shards"),
        (["format=shards", "src=x", "shard_size=lots"], "shard_size 'lots' is not a size"),
        (["format=shards", "src=x", "dst=s3://b/x"], "builds on local disk"),
        (["mode=upload", "out=/tmp/x"], "mode=upload needs out=s3://"),
        (["storage.retries=-1"], r"storage: storage.retries must be an integer >= 0"),
    ],
)
def test_bad_shard_options_are_named(tmp_path: Path, overrides: list[str], message: str) -> None:
    cfg = compose_config("preprocess", [f"dst={tmp_path / 'store'}", *overrides])
    with pytest.raises(ValueError, match=message):
        preprocess(cfg)
