"""The checkpoints a long-running process (the local app) answers with: a path a person types
becomes a loaded ``Predictor`` once, and stays loaded while it is among the last few used."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from omegaconf import DictConfig

from clipbert.predictor import Predictor
from clipbert.runs.devices import torch_device
from clipbert.runs.original import load_any_run
from clipbert.runs.selection import CHECKPOINT_FOLDERS, select_checkpoint


def checkpoint_at(location: str, step: int | None = None) -> Path:
    """The checkpoint a typed location names: a ``.ckpt``, an original ``.pt`` or a model
    folder as it is, a ``train.py`` run folder by its best checkpoint (its ``step_N`` with
    ``step``)."""
    location = location.strip()
    if not location:
        raise ValueError("give the path of a checkpoint (.ckpt), model folder or run folder")
    path = Path(location).expanduser()
    if path.is_dir() and any((path / folder).is_dir() for folder in CHECKPOINT_FOLDERS):
        checkpoint = select_checkpoint(None, str(path), step)
    else:
        checkpoint = select_checkpoint(str(path), None, None)
    if not checkpoint.exists():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint, model folder or run folder")
    return checkpoint


class CheckpointCache:
    """Loads checkpoints as ``predict.py`` does (``load_any_run``: an original ``.pt`` pairs
    with ``cfg.task``) and keeps the last ``size`` loaded, so asking again costs no reload."""

    def __init__(self, cfg: DictConfig, size: int = 2) -> None:
        if size < 1:
            raise ValueError(f"models_kept must be >= 1, got {size}")
        self.cfg = cfg
        self.size = size
        self.device = torch_device(str(cfg.accelerator))
        self.precision = str(cfg.precision)
        self._loaded: OrderedDict[Path, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, location: str) -> tuple[Path, Predictor]:
        """The checkpoint a location names and its predictor, loaded on first use (once for
        a file and the links to it, such as ``best.ckpt``)."""
        checkpoint = checkpoint_at(location, self.cfg.get("step"))
        key = checkpoint.resolve()
        with self._lock:  # two requests for one new checkpoint load it once
            if key not in self._loaded:
                run = load_any_run(checkpoint, self.cfg, ans2label=self.cfg.get("ans2label"))
                self._loaded[key] = Predictor.from_run(
                    run, self.device, None, self.cfg.get("score_agg"), precision=self.precision
                )
                while len(self._loaded) > self.size:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(key)
            return checkpoint, self._loaded[key]
