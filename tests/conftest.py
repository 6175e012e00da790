"""Shared fixtures: a tiny demo dataset and composed Hydra configs pointing at temp folders."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from tests.helpers import TINY_DEMO_SIZES, compose_config, tiny_demo_overrides

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")

# No network in tests, in this process and in every Python process a test starts.
NETWORK_GUARD = Path(__file__).resolve().parent / "network_guard"
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(NETWORK_GUARD), os.environ.get("PYTHONPATH")])
)
runpy.run_path(str(NETWORK_GUARD / "sitecustomize.py"))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated demo dataset (real mp4 videos in a real LMDB), shared by the session."""
    from clipbert.demo import ensure_demo_dataset

    root = tmp_path_factory.mktemp("demo_data")
    ensure_demo_dataset(root, sizes=TINY_DEMO_SIZES, progress=False)
    return root


@pytest.fixture
def train_config(demo_root: Path, tmp_path: Path):
    """Factory: the default training config on the tiny demo data, writing under tmp_path."""

    def make(*overrides: str) -> DictConfig:
        cfg = compose_config(
            "train",
            [
                *tiny_demo_overrides(demo_root),
                "task.datamodule.batch_size=8",
                "task.datamodule.eval_batch_size=8",
                "trainer.max_epochs=1",
                "trainer.num_sanity_val_steps=0",
                *overrides,
            ],
        )
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
        return cfg

    return make
