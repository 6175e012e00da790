"""Build a ``vis_db`` LMDB store from a folder of videos or images (the core of preprocess.py).

The result is byte-compatible with the original ClipBERT stores: key = file stem, value = the
video file's raw bytes, or for images a JPEG re-encoding (so every image decodes the same way,
whatever format it came in). Two options leave that format: images stored as their own file
bytes (``image_format="raw"``: lossless, no re-encode) and videos re-encoded at a lower frame
rate and size (``reencode``: cheaper decoding later, at the cost of changed pixels).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageOps
from tqdm import tqdm

from clipbert.atomic_files import write_text_atomic
from clipbert.data.decoding import decode_image
from clipbert.data.reencode import ReencodeSettings, reencode_video
from clipbert.data.stores import (
    LmdbWriter,
    StoreNotEmptyError,
    normalize_extensions,
    scan_files,
)

DEFAULT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "video": ("mp4", "avi", "mkv", "webm", "mov", "gif"),
    "image": ("jpg", "jpeg", "png", "bmp", "webp"),
}
IMAGE_FORMATS = ("jpeg", "raw")
ERROR_LOG = "error_filepaths.log"
RECORD_FILE = "preprocess.json"  # the settings a store was built with: a rerun resumes it


@dataclass
class BuildReport:
    """What a store build did; ``failed`` holds (file path, reason) pairs."""

    written: int
    failed: list[tuple[str, str]]
    skipped_extension: int
    store_path: Path
    already_present: int = 0

    def summary(self) -> str:
        lines = [f"wrote {self.written} entries to {self.store_path}"]
        if self.already_present:
            lines.append(f"{self.already_present} were already there (resumed)")
        if self.failed:
            lines.append(
                f"{len(self.failed)} files could not be read and were left out "
                f"(listed in {self.store_path / ERROR_LOG})"
            )
        if self.skipped_extension:
            lines.append(f"{self.skipped_extension} files skipped: extension not selected")
        return "; ".join(lines)


@dataclass(frozen=True)
class FileSource:
    """The files a build reads (under ``src``, by key) and how each becomes a store value;
    ``settings`` records both, so a rerun with other settings is told apart from a resume."""

    files: dict[str, Path]
    skipped_extension: int
    encoding: _Encoding
    settings: dict

    @classmethod
    def scan(
        cls,
        src_dir: str | os.PathLike[str],
        *,
        file_type: str = "video",
        extensions: Sequence[str] | None = None,
        jpeg_quality: int = 95,
        image_format: str = "jpeg",
        reencode: ReencodeSettings | None = None,
        duplicate_stems: str = "error",
    ) -> FileSource:
        """Check the options and index the files; two files with one stem are an error before
        anything is written (unless ``duplicate_stems="prefix"``)."""
        if file_type not in DEFAULT_EXTENSIONS:
            raise ValueError(
                f"file_type must be one of {', '.join(DEFAULT_EXTENSIONS)}, got {file_type!r}"
            )
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(
                f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}"
            )
        if reencode is not None and not reencode.enabled:
            reencode = None
        src = Path(src_dir).expanduser().resolve()
        if not src.is_dir():
            raise FileNotFoundError(f"source folder {src} does not exist or is not a directory")
        exts = normalize_extensions(
            extensions if extensions is not None else DEFAULT_EXTENSIONS[file_type]
        )
        files, skipped = scan_files(src, exts, duplicate_stems)
        if not files:
            raise ValueError(
                f"no files with extensions {', '.join(exts)} under {src}; check src_dir and "
                "extensions (and file_type)"
            )
        settings = {
            "src": str(src),
            "file_type": file_type,
            "extensions": list(exts),
            "jpeg_quality": jpeg_quality,
            "duplicate_stems": duplicate_stems,
        }
        # recorded only when set, so stores built before these options existed still resume
        if image_format != "jpeg":
            settings["image_format"] = image_format
        if reencode is not None:
            settings["reencode"] = asdict(reencode)
        encoding = _Encoding(file_type, jpeg_quality, image_format, reencode)
        return cls(files, skipped, encoding, settings)

    def load(
        self, keys: Sequence[str], workers: int = 0
    ) -> Iterator[tuple[str, Path, bytes | None, str | None]]:
        """``(key, path, value, None)`` or ``(key, path, None, reason)`` for each of ``keys``,
        in order; ``workers`` > 0 reads and encodes in that many processes."""
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        return _load_all([(key, self.files[key]) for key in keys], self.encoding, workers)


def build_vis_db(
    src_dir: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    file_type: str = "video",
    extensions: Sequence[str] | None = None,
    overwrite: bool = False,
    jpeg_quality: int = 95,
    image_format: str = "jpeg",
    reencode: ReencodeSettings | None = None,
    workers: int = 0,
    duplicate_stems: str = "error",
    commit_every: int = 1000,
    progress: bool = True,
) -> BuildReport:
    """Store every matching file under ``src_dir`` (recursively) in the LMDB at ``dst``.

    Videos are stored byte for byte; images are decoded (EXIF orientation applied, converted to
    RGB) and re-encoded as JPEG at ``jpeg_quality``, as the original does with OpenCV at 95.
    ``image_format="raw"`` stores each image's own bytes instead (after checking it decodes;
    loaders apply the EXIF orientation). ``reencode`` with a frame rate and/or shorter side
    stores each video as H.264 at those (see :mod:`clipbert.data.reencode`). Unreadable files
    are reported and logged in ``dst/error_filepaths.log``; the build goes on.

    The build commits in batches and records its settings in ``dst/preprocess.json``, so after
    an interruption (even SIGKILL) the same call adds only the files that are missing.
    ``workers`` > 0 reads and re-encodes files in that many processes. Two files with one stem
    are an error, or with ``duplicate_stems="prefix"`` every key becomes the file's path under
    ``src_dir`` without its extension (``folder/stem``).
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    source = FileSource.scan(
        src_dir,
        file_type=file_type,
        extensions=extensions,
        jpeg_quality=jpeg_quality,
        image_format=image_format,
        reencode=reencode,
        duplicate_stems=duplicate_stems,
    )
    store = Path(dst).expanduser().resolve()
    settings = source.settings
    resume = not overwrite and _recorded_settings(store) == settings
    if not overwrite and not resume and (store / RECORD_FILE).is_file():
        raise StoreNotEmptyError(
            f"{store} was built with other settings ({_recorded_settings(store)}); build into "
            "another directory, or pass overwrite=true to replace it"
        )
    report = BuildReport(
        written=0, failed=[], skipped_extension=source.skipped_extension, store_path=store
    )
    with LmdbWriter(
        store,
        overwrite=overwrite,
        resume=resume,
        commit_every=commit_every,
        allowed_files=(RECORD_FILE, ERROR_LOG),
    ) as writer:
        write_text_atomic(store / RECORD_FILE, json.dumps(settings, indent=2) + "\n")
        (store / ERROR_LOG).unlink(missing_ok=True)  # stale log of a replaced build
        todo = [key for key in source.files if key not in writer]
        report.already_present = len(source.files) - len(todo)
        for key, path, value, error in tqdm(
            source.load(todo, workers),
            total=len(todo),
            desc=f"building {store.name}",
            unit="file",
            disable=not progress,
        ):
            if error is not None:
                report.failed.append((str(path), error))
                continue
            writer.put(key, value)
        report.written = len(writer)
    write_error_log(store, report.failed)
    return report


def write_error_log(store: Path, failed: list[tuple[str, str]]) -> None:
    """List the files a build left out in ``store/error_filepaths.log`` (none: no log)."""
    (store / ERROR_LOG).unlink(missing_ok=True)
    if failed:
        lines = [f"{path}\t{reason}" for path, reason in failed]
        (store / ERROR_LOG).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _recorded_settings(store: Path) -> dict | None:
    try:
        return json.loads((store / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class _Encoding:
    """How a file becomes a store value (sent to worker processes)."""

    file_type: str
    jpeg_quality: int
    image_format: str
    reencode: ReencodeSettings | None

    def value(self, path: Path) -> bytes:
        data = path.read_bytes()
        if self.file_type == "video":
            return data if self.reencode is None else reencode_video(data, self.reencode)
        if self.image_format == "raw":
            decode_image(data)  # an unreadable image is reported now, not in training
            return data
        return _reencode_image(data, self.jpeg_quality)


def _load_all(
    todo: list[tuple[str, Path]], encoding: _Encoding, workers: int
) -> Iterator[tuple[str, Path, bytes | None, str | None]]:
    """(key, path, bytes, None) or (key, path, None, reason) per file, in order."""
    jobs = [(key, path, encoding) for key, path in todo]
    if workers == 0:
        yield from map(_load, jobs)
        return
    # spawn: the parent holds an open LMDB environment, which a forked child must not inherit
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_load, jobs, chunksize=4)


def _load(job: tuple[str, Path, _Encoding]) -> tuple[str, Path, bytes | None, str | None]:
    key, path, encoding = job
    try:
        value = encoding.value(path)
    except Exception as exc:  # any unreadable file is logged and skipped
        return key, path, None, f"{type(exc).__name__}: {exc}"
    return key, path, value, None


def _reencode_image(data: bytes, jpeg_quality: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        rgb = ImageOps.exif_transpose(image).convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=jpeg_quality)
    return buffer.getvalue()
