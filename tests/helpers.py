"""Helpers shared by tests."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from clipbert.cli import CONFIG_DIR


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose a shipped config the way the entry points do, with the given overrides."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)
