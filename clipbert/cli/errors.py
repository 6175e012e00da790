"""One clear line instead of a traceback when a command stops.

Hydra prints a traceback for any exception of the task function. A user who gave a broken file
or a bad setting needs our message (it names the file, line or key and what to do), not our
call stack; ``HYDRA_FULL_ERROR=1`` still shows the traceback, as Hydra documents.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Callable
from typing import TypeVar

from hydra.errors import InstantiationException
from omegaconf import DictConfig

from clipbert.data.decoding import DecodeError, DecoderHungError

R = TypeVar("R")

# What bad input or settings raise; anything else is likely our bug, so the line says how to
# see the traceback.
INPUT_ERRORS = (ValueError, OSError, LookupError, DecodeError, DecoderHungError)
WORKER_TRACEBACK = "Traceback (most recent call last)"
# Packages that an extra of clipbert installs: a missing one's error names the extra.
EXTRA_OF_PACKAGE = {
    "wandb": "wandb",
    "tensorboardX": "tensorboard",
    "tensorboard": "tensorboard",
    "decord": "decord",
    "torchcodec": "torchcodec",
    "litdata": "shards",
    "boto3": "shards",
    "optuna": "sweep",
    "submitit": "slurm",
    "gradio": "app",
}
# `hydra/launcher=NAME` choices that hydra-submitit-launcher (the [slurm] extra) provides
SUBMITIT_LAUNCHERS = ("slurm", "submitit_slurm", "submitit_local")


def reported(task: Callable[[DictConfig], R]) -> Callable[[DictConfig], R]:
    """Wrap a Hydra task function: any exception ends the process with one line on stderr."""

    @functools.wraps(task)
    def run(cfg: DictConfig) -> R:
        try:
            return task(cfg)
        except Exception as exc:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            raise SystemExit(f"error: {one_line(exc)}") from None

    return run


def one_line(exc: BaseException) -> str:
    """The exception's message on one line; what Hydra's instantiate or a DataLoader worker
    wrapped around it is taken off."""
    if isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if WORKER_TRACEBACK in text:  # re-raised from a loader worker: "Type: message" is last
        text = text.strip().splitlines()[-1]
    else:
        text = f"{type(exc).__name__}: {text}"
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    hint = install_hint(line) if isinstance(exc, ImportError) else ""
    if hint:
        line += hint
    elif not isinstance(exc, INPUT_ERRORS):
        line += " (HYDRA_FULL_ERROR=1 shows the traceback)"
    return line


def install_hint(message: str) -> str:
    """`` (pip install 'clipbert[EXTRA]')`` when ``message`` names a package an extra installs
    (Lightning's loggers say "Requirement 'wandb>=0.12.10' not met") and not yet the extra,
    else ``""``."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", message))
    extras = sorted({extra for package, extra in EXTRA_OF_PACKAGE.items() if package in words})
    missing = [extra for extra in extras if f"clipbert[{extra}]" not in message]
    return "".join(f" (pip install 'clipbert[{extra}]')" for extra in missing)


def require_launcher_plugin(overrides: list[str]) -> None:
    """Stop, naming the extra to install, when an override picks a submitit launcher that is not
    installed: Hydra would only say that it cannot load ``hydra/launcher/submitit_slurm``."""
    for override in overrides:
        group, _, choice = override.partition("=")
        picked = group.lstrip("+~") == "hydra/launcher" and choice in SUBMITIT_LAUNCHERS
        if picked and not _importable("hydra_plugins.hydra_submitit_launcher"):
            raise SystemExit(
                f"error: {override} needs hydra-submitit-launcher: pip install clipbert[slurm]"
            )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False
