"""Look after a built ``vis_db``: what it holds, whether every entry decodes, which annotation
ids it lacks, and getting the files back out (``python preprocess.py mode=...``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from clipbert.atomic_files import write_bytes_atomic
from clipbert.data.annotations import VIDEO_ID_FIELDS, iter_jsonl
from clipbert.data.decoding import DecodeError, VideoDecoder, VideoInfo, decode_image
from clipbert.data.stores import VisualStore

ID_FIELDS = (*VIDEO_ID_FIELDS, "image_id")
BROKEN_LOG = "broken_entries.tsv"


@dataclass
class StoreSummary:
    """``inspect``: the entry count, the bytes they hold, and a few keys to eyeball."""

    entries: int
    total_bytes: int
    sample_keys: list[str]

    def summary(self) -> str:
        return (
            f"{self.entries} entries, {self.total_bytes / 2**20:.1f} MiB; "
            f"first keys: {', '.join(self.sample_keys)}"
        )


def inspect_store(store: VisualStore, samples: int = 5) -> StoreSummary:
    keys = store.keys()
    total = sum(len(store.get(key)) for key in keys)
    return StoreSummary(entries=len(keys), total_bytes=total, sample_keys=keys[:samples])


@dataclass
class ValidationReport:
    """``validate``: how many entries were checked and why each broken one failed."""

    checked: int
    broken: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.broken:
            return f"all {self.checked} entries decode"
        return f"{len(self.broken)} of {self.checked} entries do not decode"


def _first_middle_last(info: VideoInfo) -> list[int]:
    return sorted({0, info.num_frames // 2, info.num_frames - 1})


def validate_store(
    store: VisualStore,
    file_type: str,
    decoder: VideoDecoder,
    report_dir: Path | None = None,
    progress: bool = True,
) -> ValidationReport:
    """Decode every entry (a video's first, middle and last frames; an image whole) with the
    decoder training would use; list the failures, also in ``report_dir/broken_entries.tsv``."""
    report = ValidationReport(checked=0)
    for key in tqdm(store.keys(), desc="validating", unit="entry", disable=not progress):
        data = store.get(key)
        try:
            if file_type == "image":
                decode_image(data)
            else:
                decoder.read(data, _first_middle_last)
        except DecodeError as err:
            report.broken[key] = str(err)
        report.checked += 1
    if report_dir is not None:
        log = Path(report_dir) / BROKEN_LOG
        log.unlink(missing_ok=True)
        if report.broken:
            log.write_text("".join(f"{k}\t{reason}\n" for k, reason in report.broken.items()))
    return report


@dataclass
class CheckReport:
    """``check``: annotation ids (``video_id``, ``gif_name``, ``clip_name``, ``image_id``) the
    store lacks."""

    ids: int
    missing: list[str]

    def summary(self) -> str:
        if not self.missing:
            return f"all {self.ids} annotation ids are in the store"
        shown = ", ".join(self.missing[:10])
        return f"{len(self.missing)} of {self.ids} annotation ids are not in the store: {shown}"


def check_annotations(
    store: VisualStore, annotation_files: Sequence[str | os.PathLike]
) -> CheckReport:
    ids: dict[str, None] = {}
    for path in annotation_files:
        for line_number, record in iter_jsonl(path):
            key = next((k for k in ID_FIELDS if k in record), None)
            if key is None:
                raise ValueError(
                    f"{path}:{line_number}: no id field (one of {', '.join(ID_FIELDS)})"
                )
            ids[str(record[key])] = None
    present = set(store.keys())
    return CheckReport(ids=len(ids), missing=[i for i in ids if i not in present])


_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "mp4"),
    (0, b"\x1a\x45\xdf\xa3", "mkv"),  # Matroska and WebM
    (0, b"RIFF", "avi"),
    (0, b"GIF8", "gif"),
    (0, b"\xff\xd8\xff", "jpg"),
    (0, b"\x89PNG", "png"),
)


def guess_extension(data: bytes) -> str:
    """The file extension of stored bytes, from their signature ("bin" when unknown)."""
    for offset, magic, extension in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if extension == "mkv" and b"webm" in data[:64]:
                return "webm"
            return extension
    return "bin"


def export_store(store: VisualStore, out_dir: str | os.PathLike, progress: bool = True) -> int:
    """Write every entry to ``out_dir/<key>.<ext>`` (the extension guessed from the bytes);
    existing files are left alone. Returns the number of files written."""
    out = Path(out_dir).expanduser().resolve()
    written = 0
    for key in tqdm(store.keys(), desc="exporting", unit="entry", disable=not progress):
        data = store.get(key)
        target = out / f"{key}.{guess_extension(data)}"
        if not target.resolve().is_relative_to(out):
            raise ValueError(f"key {key!r} would be written outside {out}")
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, data)  # a killed export leaves no half-written file
        written += 1
    return written
