"""Shared fixtures: a tiny demo dataset and composed Hydra configs pointing at temp folders."""

from __future__ import annotations

import os
import runpy
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from tests.helpers import TINY_DEMO_SIZES, compose_config, tiny_demo_overrides
from tests.s3_server import CREDENTIALS, s3_server

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


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server on loopback for the session, with test credentials in the
    environment (of this process and the processes tests start). Tests pass the endpoint in
    config or as AWS_ENDPOINT_URL."""
    pytest.importorskip("moto", reason="the S3 server of the tests is moto (the dev extra)")
    with pytest.MonkeyPatch.context() as patch, s3_server() as server:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        yield server.endpoint


@pytest.fixture(scope="session")
def demo_shards(demo_root: Path, s3_endpoint: str, tmp_path_factory) -> tuple[Path, str]:
    """The tiny demo's videos as a local shard store and the same store uploaded to the
    loopback server: (folder, s3:// URL)."""
    pytest.importorskip("litdata", reason="shard stores need the [shards] extra")
    from clipbert.data.object_storage import RemoteSettings
    from clipbert.data.shard_builder import shard_store_copy, upload_shards
    from clipbert.data.stores import LmdbStore

    local = tmp_path_factory.mktemp("shards") / "demo_video_qa"
    lmdb = LmdbStore(demo_root / "vis_db" / "demo_video_qa")
    shard_store_copy(lmdb, local, shard_bytes=100_000, progress=False)
    remote = RemoteSettings(endpoint_url=s3_endpoint)
    remote.client().create_bucket(Bucket="demo")
    upload_shards(local, "s3://demo/shards/demo_video_qa", remote, progress=False)
    return local, "s3://demo/shards/demo_video_qa"


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
