"""Where the shipped Hydra configs live, how Python composes one, and which classes they may
make Hydra build.

Rebuilding a model from a checkpoint instantiates the ``_target_`` entries of its recorded
config; a checkpoint from someone else could name any callable (``os.system``), which is as
dangerous as unpickling it. So a recorded config may only name what our own configs name,
plus what the user vouches for.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

_PACKAGE = Path(__file__).resolve().parents[1]
# A wheel ships the configs inside the package; a source checkout keeps them at the top level.
CONFIG_DIR = str(
    next((p for p in (_PACKAGE / "configs", _PACKAGE.parent / "configs") if p.is_dir()), "")
)


def compose_shipped(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """A shipped config composed as its entry point composes it (``predict`` with
    ``task=NAME``: what an original checkpoint is paired with), for callers outside Hydra."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def check_targets(config: Any, source: str, trusted: Sequence[str] = ()) -> None:
    """Refuse a config that would make Hydra call anything but what clipbert's configs call;
    ``trusted`` adds targets the user vouches for. ``source`` names the config in the error."""
    allowed = shipped_targets() | set(trusted)
    for key, target in _targets(config):
        if target not in allowed:
            raise ValueError(
                f"{source} names {target!r} at '{key}._target_', which no clipbert config "
                "uses; building it could run any code. If you trust this checkpoint, pass "
                f"trusted_targets=[{target}]"
            )


@functools.cache
def shipped_targets() -> frozenset[str]:
    """Every ``_target_`` in the configs that ship with clipbert (except ``get_class``, which
    returns any class it is given), and those older releases recorded in their checkpoints."""
    found = set(MOVED_TARGETS)
    for file in Path(CONFIG_DIR).rglob("*.yaml"):
        config = OmegaConf.to_container(OmegaConf.load(file), resolve=False)
        found |= {target for _, target in _targets(config)}
    return frozenset(found - {"hydra.utils.get_class"})


# Classes that moved, by the name a checkpoint of an older release records: such a checkpoint
# names them in its trainer and callbacks config, which is never rebuilt from a checkpoint.
MOVED_TARGETS = {
    "clipbert.cli.checkpointing.AtomicCheckpointIO": "clipbert.callbacks.resume.AtomicCheckpointIO",
    "clipbert.cli.checkpointing.ExactResume": "clipbert.callbacks.resume.ExactResume",
    "clipbert.monitoring.TrainingMonitor": "clipbert.callbacks.monitoring.TrainingMonitor",
    "clipbert.cli.sweep_summary.SweepSummary": "clipbert.callbacks.sweep_summary.SweepSummary",
}


def _targets(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, target) of every ``_target_`` in a nested config of dicts and lists."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "_target_":
                yield key or "<root>", str(value)
            else:
                yield from _targets(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _targets(value, f"{key}[{index}]")
