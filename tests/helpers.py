"""Helpers shared by tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from clipbert.data.decoding import VideoDecoder, build_decoder
from clipbert.runs.configs import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]
TINY_DEMO_SIZES = {"train": 24, "val": 8, "test": 8}

# The parity fixture made by the original code (shared/fixtures beside the checkout; CI has it
# there). CLIPBERT_FIXTURES points elsewhere, e.g. on a machine that only has a copy.
FIXTURES = Path(
    os.environ.get("CLIPBERT_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures")
)


def load_fixture(*parts: str) -> object:
    """A file of the parity fixture (``FIXTURES / parts``), loaded as tensors only; the test
    is skipped where the fixture is absent."""
    path = FIXTURES.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"parity fixture not found at {path}")
    return torch.load(path, weights_only=True)


def decoder_or_skip(name: str, **kwargs: object) -> VideoDecoder:
    """``build_decoder(name, **kwargs)``; the test is skipped where that decoder's library is
    not installed or does not load (decord and torchcodec are optional), saying which."""
    try:
        return build_decoder(name, **kwargs)
    except ImportError as exc:
        pytest.skip(f"the {name} decoder is not available here: {exc}")


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose a shipped config the way the entry points do, with the given overrides."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def train_run_config(out: Path | str, *overrides: str) -> DictConfig:
    """The train.py config with ``overrides``, writing its run to ``out``."""
    cfg = compose_config("train", list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def predict_config(out: Path | str, *overrides: str) -> DictConfig:
    """The predict.py config with ``overrides``, writing its outputs to ``out``."""
    cfg = compose_config("predict", list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def tiny_demo_overrides(demo_root: Path) -> list[str]:
    """train.py overrides for the tiny demo under ``demo_root``: loading in the main process,
    no progress bars (quiet logs)."""
    sizes = ",".join(f"{split}:{n}" for split, n in TINY_DEMO_SIZES.items())
    return [
        f"paths.data_root={demo_root}",
        f"+task.datamodule.prepare.sizes={{{sizes}}}",
        "+task.datamodule.prepare.progress=false",
        "task.datamodule.num_workers=0",
        "trainer.enable_progress_bar=false",
        "callbacks.progress_bar=null",
    ]


def free_port() -> int:
    """A loopback port nothing listens on now, for a server or a process group's store."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_script(name: str, *args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python <name>`` (an entry point at the repository root) with ``args`` in a new process,
    output captured as text."""
    return subprocess.run(
        [sys.executable, str(REPO / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_train(*overrides: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python train.py`` with ``overrides`` in a new process (output captured as text)."""
    return run_script("train.py", *overrides, cwd=cwd, timeout=timeout)


def original_layout_config(
    root: Path, tmp_path: Path, *overrides: str, one_batch: bool = True
) -> DictConfig:
    """train.py's config for a task on the ``original_layout`` data under ``root``: the tiny
    model from scratch, quiet, writing under ``tmp_path``; one batch (``debug=fdr``) unless
    ``one_batch`` is False."""
    cfg = compose_config(
        "train",
        [
            f"paths.data_root={root}",
            "model=tiny",
            "model.init_from=null",
            "model.cnn_weights=null",  # pre-training starts from grid-feat R50 and BERT files
            "model.bert.pretrained_dir=null",
            *(["debug=fdr"] if one_batch else []),
            "task.datamodule.num_workers=0",
            "task.datamodule.pin_memory=false",
            "task.datamodule.batch_size=2",
            "task.datamodule.eval_batch_size=2",
            "trainer.enable_progress_bar=false",
            "callbacks.progress_bar=null",
            "callbacks.lr_monitor=null",
            "logger=[]",
            *overrides,
        ],
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.task.datamodule.pop("prepare", None)
    return cfg
