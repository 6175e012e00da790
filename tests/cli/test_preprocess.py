"""preprocess.py: a folder of videos -> an LMDB in the original's format, via the real CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import lmdb

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "tests" / "assets"


def run_preprocess(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "preprocess.py"), *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
    assert again.returncode != 0
    assert "overwrite=true" in again.stderr

    forced = run_preprocess(f"src={src}", f"dst={dst}", "overwrite=true", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    with lmdb.open(str(dst), readonly=True, lock=False) as env:
        assert env.stat()["entries"] == 3
