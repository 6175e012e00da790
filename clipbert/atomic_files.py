"""File writes that never leave a half-written file behind.

Each writes a ``.<host>.<pid>.partial`` file beside the target, flushes it to disk, then
renames it over the target: readers, a killed process or a crash see the old file or the new
one, never a torn one, and two processes writing the same file never share a partial file.
A partial file left by a killed writer on this host is removed by the next successful write of
the same target, so repeated interruptions cannot fill the disk.
"""

from __future__ import annotations

import glob
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch


@contextmanager
def _atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """An open file whose contents replace ``path`` (old or new, never torn) when the block
    ends without an error; on an error the partial file is removed and ``path`` is left alone."""
    path = Path(path)
    prefix = f"{path.name}.{socket.gethostname()}."
    partial = path.with_name(f"{prefix}{os.getpid()}.partial")
    try:
        with partial.open("wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    for stale in path.parent.glob(f"{glob.escape(prefix)}*.partial"):
        pid = stale.name[len(prefix) : -len(".partial")]
        if pid.isdigit() and not _is_running(int(pid)):
            stale.unlink(missing_ok=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` next to ``path`` and rename it into place, so readers see old or new."""
    with _atomic_file(path) as file:
        file.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``write_bytes_atomic`` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through a temporary file, so an interrupted save never clobbers ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with _atomic_file(path) as file:
        torch.save(obj, file)
    return Path(path)
