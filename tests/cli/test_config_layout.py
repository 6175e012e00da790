"""The task and experiment configs state each thing once: shared values live in the shared
groups (recipe/, family/, optimizer/, data/) and a task file holds only what sets it apart.

Every file of those groups is read as its sequence of value lines, ``dotted.key=value`` in file
order, with the dotted key taken from the root of the composed config (the file's ``@package``
header), so the same values stated in two differently packaged files still read the same.
Mappings, flow mappings included, are flattened; a list is one value; the ``defaults`` list is
left out. No run of 3 consecutive value lines may appear in more than 2 files.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"  # a source checkout's configs
GROUPS = ("task", "experiment", "recipe", "family", "optimizer", "data")
WINDOW = 3  # consecutive value lines that make a block
MAX_FILES = 2  # files that may state the same block
PACKAGE_HEADER = re.compile(r"#\s*@package\s+(\S+)")


def package_of(path: Path, root: Path) -> str:
    """Where the file's values land in the composed config: its ``@package`` header (read from
    the leading comment lines, as Hydra does), else its group path; ``""`` for the root."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        match = PACKAGE_HEADER.match(line)
        if match:
            package = match.group(1)
            return "" if package == "_global_" else package
    return ".".join(path.relative_to(root).parent.parts)


def value_lines(node: Any, prefix: str) -> list[str]:
    """``key.path=value`` for every value under ``node``, in file order."""
    if isinstance(node, dict) and node:
        lines = []
        for key, value in node.items():
            lines += value_lines(value, f"{prefix}.{key}" if prefix else str(key))
        return lines
    return [f"{prefix}={json.dumps(node)}"]


def file_lines(path: Path, root: Path) -> list[str]:
    """The value lines of one config file, keyed from the root of the composed config."""
    config = yaml.safe_load(path.read_text()) or {}
    config.pop("defaults", None)
    return value_lines(config, package_of(path, root)) if config else []


def config_files(root: Path) -> list[Path]:
    return sorted(p for group in GROUPS for p in (root / group).glob("**/*.yaml"))


def repeated_blocks(root: Path) -> dict[tuple[str, ...], list[str]]:
    """Each block of ``WINDOW`` consecutive value lines found in more than ``MAX_FILES``
    files, with those files."""
    found: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for path in config_files(root):
        lines = file_lines(path, root)
        for start in range(len(lines) - WINDOW + 1):
            found[tuple(lines[start : start + WINDOW])].add(str(path.relative_to(root)))
    return {block: sorted(files) for block, files in found.items() if len(files) > MAX_FILES}


def test_no_block_of_values_is_stated_in_more_than_two_files() -> None:
    repeated = repeated_blocks(CONFIG_DIR)
    report = "\n".join(
        f"  {' | '.join(block)}\n    in {', '.join(files)}" for block, files in repeated.items()
    )
    assert not repeated, f"blocks stated in more than {MAX_FILES} files:\n{report}"


def test_every_group_is_read(tmp_path: Path) -> None:
    """The check reads every shared group, and reads a block the same whatever package it is
    stated in: one block in three files under three headers is caught; without a header, a
    file's values land under its group (Hydra's default), so the fourth file differs."""
    root = CONFIG_DIR
    assert {p.relative_to(root).parts[0] for p in config_files(root)} == set(GROUPS)
    files = {
        "optimizer/a.yaml": "# @package task.module\nlr: 1.0\nwd: 0.1\neps: 1.0e-6\n",
        "recipe/a.yaml": "# @package _global_\ntask:\n  module:\n    lr: 1.0\n    wd: 0.1\n"
        "    eps: 1.0e-6\n",
        "task/a.yaml": "# @package _global_\ndefaults:\n  - _self_\n"
        "task:\n  module: {lr: 1.0, wd: 0.1, eps: 1.0e-6}\n",
        "family/a.yaml": "task:\n  module: {lr: 1.0, wd: 0.1, eps: 1.0e-6}\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir()
        (tmp_path / name).write_text(text)
    block = ("task.module.lr=1.0", "task.module.wd=0.1", "task.module.eps=1e-06")
    assert repeated_blocks(tmp_path) == {
        block: ["optimizer/a.yaml", "recipe/a.yaml", "task/a.yaml"]
    }
    assert file_lines(tmp_path / "family/a.yaml", tmp_path)[0] == "family.task.module.lr=1.0"


def test_no_defaults_entry_moves_a_package() -> None:
    """Packages come from the files' headers (which the check reads), never from an
    ``entry@package`` in a defaults list (which it does not)."""
    root = CONFIG_DIR
    for path in config_files(root):
        defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults", [])
        entries = [e if isinstance(e, str) else next(iter(e)) for e in defaults]
        assert not [e for e in entries if "@" in e], f"{path.relative_to(root)}: {entries}"


def test_tgif_transition_is_tgif_action_with_its_own_names() -> None:
    """TGIF-QA Transition is Action's recipe on other split files: its file says only that."""
    path = CONFIG_DIR / "task" / "tgif_transition.yaml"
    config = yaml.safe_load(path.read_text())
    assert config["defaults"] == ["tgif_action", "_self_"]
    keys = [line.split("=", 1)[0] for line in file_lines(path, CONFIG_DIR)]
    assert keys == [
        "task.name",
        "task.datamodule.splits.train",
        "task.datamodule.splits.val",
        "task.datamodule.splits.test",
    ]
