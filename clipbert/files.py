"""File writes that never leave a half-written file behind.

Each writes a ``.<pid>.partial`` file beside the target, flushes it to disk, then renames it
over the target: readers, a killed process or a crash see the old file or the new one, never a
torn one, and two processes writing the same file never share a partial file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` next to ``path`` and rename it into place, so readers see old or new."""
    path = Path(path)
    partial = _partial(path)
    with partial.open("wb") as file:
        file.write(data)
        _flush(file)
    os.replace(partial, path)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``write_bytes_atomic`` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through a temporary file, so an interrupted save never clobbers ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(path)
    with partial.open("wb") as file:
        torch.save(obj, file)
        _flush(file)
    os.replace(partial, path)
    return path


def _partial(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}.partial")


def _flush(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())
