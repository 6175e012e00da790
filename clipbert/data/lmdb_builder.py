"""Build a ``vis_db`` LMDB store from a folder of videos or images (the core of preprocess.py).

The result is byte-compatible with the original ClipBERT stores: key = file stem, value = the
video file's raw bytes, or for images a JPEG re-encoding (so every image decodes the same way,
whatever format it came in).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps
from tqdm import tqdm

from clipbert.data.stores import LmdbWriter, normalize_extensions, scan_files

DEFAULT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "video": ("mp4", "avi", "mkv", "webm", "mov", "gif"),
    "image": ("jpg", "jpeg", "png", "bmp", "webp"),
}
ERROR_LOG = "error_filepaths.log"


@dataclass
class BuildReport:
    """What a store build did; ``failed`` holds (file path, reason) pairs."""

    written: int
    failed: list[tuple[str, str]]
    skipped_extension: int
    store_path: Path

    def summary(self) -> str:
        lines = [f"wrote {self.written} entries to {self.store_path}"]
        if self.failed:
            lines.append(
                f"{len(self.failed)} files could not be read and were left out "
                f"(listed in {self.store_path / ERROR_LOG})"
            )
        if self.skipped_extension:
            lines.append(f"{self.skipped_extension} files skipped: extension not selected")
        return "; ".join(lines)


def build_vis_db(
    src_dir: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    file_type: str = "video",
    extensions: Sequence[str] | None = None,
    overwrite: bool = False,
    jpeg_quality: int = 95,
    progress: bool = True,
) -> BuildReport:
    """Store every matching file under ``src_dir`` (recursively) in the LMDB at ``dst``.

    Videos are stored byte for byte; images are decoded (EXIF orientation applied, converted to
    RGB) and re-encoded as JPEG at ``jpeg_quality``, as the original does with OpenCV at 95.
    Unreadable files are reported and logged in ``dst/error_filepaths.log``; the build goes on.
    """
    if file_type not in DEFAULT_EXTENSIONS:
        raise ValueError(
            f"file_type must be one of {', '.join(DEFAULT_EXTENSIONS)}, got {file_type!r}"
        )
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    src = Path(src_dir).expanduser().resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist or is not a directory")
    exts = normalize_extensions(
        extensions if extensions is not None else DEFAULT_EXTENSIONS[file_type]
    )
    files, skipped = scan_files(src, exts)  # raises on duplicate stems, before any write
    if not files:
        raise ValueError(
            f"no files with extensions {', '.join(exts)} under {src}; check src_dir and "
            "extensions (and file_type)"
        )

    store = Path(dst).expanduser().resolve()
    report = BuildReport(written=0, failed=[], skipped_extension=skipped, store_path=store)
    read = _read_video if file_type == "video" else _reencode_image
    with LmdbWriter(store, overwrite=overwrite) as writer:
        (store / ERROR_LOG).unlink(missing_ok=True)  # stale log of a replaced build
        for key, path in tqdm(
            files.items(), desc=f"building {store.name}", unit="file", disable=not progress
        ):
            try:
                value = read(path, jpeg_quality)
            except Exception as exc:  # any unreadable file is logged and skipped
                report.failed.append((str(path), f"{type(exc).__name__}: {exc}"))
                continue
            writer.put(key, value)
        report.written = len(writer)
    if report.failed:
        lines = [f"{path}\t{reason}" for path, reason in report.failed]
        (store / ERROR_LOG).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def _read_video(path: Path, jpeg_quality: int) -> bytes:
    return path.read_bytes()


def _reencode_image(path: Path, jpeg_quality: int) -> bytes:
    with Image.open(path) as image:
        image.load()
        rgb = ImageOps.exif_transpose(image).convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=jpeg_quality)
    return buffer.getvalue()
