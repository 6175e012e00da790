"""Helpers shared by tests."""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from clipbert.cli import CONFIG_DIR

# The parity fixture made by the original code (shared/fixtures beside the checkout; CI has it
# there). CLIPBERT_FIXTURES points elsewhere, e.g. on a machine that only has a copy.
FIXTURES = Path(
    os.environ.get("CLIPBERT_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures")
)


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose a shipped config the way the entry points do, with the given overrides."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)
