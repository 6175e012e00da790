"""The run layer: a trained run (config + weights + tokenizer + answer vocabulary) loaded,
saved, checked and rebuilt, and the objects a config describes built, once for every caller
(the entry points, the Predictor, the benchmarks)."""

from clipbert.runs.build import build_module, build_task, rebuild_module
from clipbert.runs.record import TrainedRun, load_run

__all__ = ["TrainedRun", "build_module", "build_task", "load_run", "rebuild_module"]
