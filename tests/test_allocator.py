"""glibc keeps freed memory for reuse in training and prediction processes (see
clipbert/allocator.py for why)."""

from __future__ import annotations

import platform

import pytest

from clipbert.allocator import keep_freed_memory
from tests.helpers import compose_config


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_glibc_accepts_the_thresholds() -> None:
    assert keep_freed_memory() is True


@pytest.mark.parametrize("entry", ["train", "predict"])
def test_the_commands_do_it_by_default_and_can_be_told_not_to(entry: str) -> None:
    overrides = ["ckpt_path=x.ckpt"] if entry == "predict" else []
    assert compose_config(entry, overrides).keep_freed_memory is True
    assert compose_config(entry, [*overrides, "keep_freed_memory=false"]).keep_freed_memory is False


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_the_process_remembers_it_for_the_models_chunking(monkeypatch) -> None:
    import clipbert.allocator as allocator

    monkeypatch.setattr(allocator, "_keeping", False)
    assert not allocator.keeps_freed_memory()
    keep_freed_memory()
    assert allocator.keeps_freed_memory()
