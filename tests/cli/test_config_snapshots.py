"""Every composed config stays what it was: each task and experiment as ``train.py`` composes
it, and each task as ``predict.py task=NAME`` composes it, equal to a stored snapshot.

The snapshots are the unresolved configs that ``--cfg job`` prints, written with sorted keys.
A change to the configs that should change a composed value updates its snapshot on purpose:
``CLIPBERT_UPDATE_SNAPSHOTS=1 pytest tests/cli/test_config_snapshots.py``, then review the
diff like any other change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from clipbert.runs.configs import CONFIG_DIR
from tests.helpers import compose_config

SNAPSHOTS = Path(__file__).resolve().parent / "config_snapshots"
TASKS = sorted(p.stem for p in (Path(CONFIG_DIR) / "task").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
CASES = (
    [("train", "task", name) for name in TASKS]
    + [("train", "experiment", name) for name in EXPERIMENTS]
    + [("predict", "task", name) for name in TASKS]
)


def composed_yaml(entry: str, group: str, name: str) -> str:
    """The job config of ``<entry>.py <group>=<name>``, unresolved, keys sorted."""
    overrides = [f"{group}={name}"]
    if entry == "predict":
        overrides.append("ckpt_path=model.ckpt")
    cfg = compose_config(entry, overrides)
    return yaml.safe_dump(OmegaConf.to_container(cfg, resolve=False), sort_keys=True)


@pytest.mark.parametrize(("entry", "group", "name"), CASES)
def test_composed_config_equals_its_snapshot(
    entry: str, group: str, name: str, monkeypatch
) -> None:
    monkeypatch.delenv("CLIPBERT_DATA", raising=False)
    snapshot = SNAPSHOTS / entry / f"{group}={name}.yaml"
    composed = composed_yaml(entry, group, name)
    if os.environ.get("CLIPBERT_UPDATE_SNAPSHOTS") == "1":
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(composed)
    assert snapshot.is_file(), f"no snapshot {snapshot}: run with CLIPBERT_UPDATE_SNAPSHOTS=1"
    assert composed == snapshot.read_text(), f"{entry}.py {group}={name} composes differently"
