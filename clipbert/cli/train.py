"""``train(cfg)``: build the task's data, model and trainer from a Hydra config, fit, test."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from clipbert.allocator import keep_freed_memory
from clipbert.atomic_files import write_text_atomic
from clipbert.callbacks.process_group import ShutDownProcessGroupAtExit
from clipbert.callbacks.resume import requeued_checkpoint
from clipbert.callbacks.run_record import RunRecorder
from clipbert.cli.errors import reported, require_launcher_plugin
from clipbert.runs.build import build_task
from clipbert.runs.configs import CONFIG_DIR
from clipbert.runs.devices import describe_devices, resolve_precision

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None) -> list:
    return [instantiate(node) for node in (group or {}).values() if node is not None]


def link_best_checkpoint(best_model_path: str) -> Path:
    """Point ``checkpoints/best.ckpt`` at the best checkpoint so scripts need not know its name."""
    best = Path(best_model_path)
    link = best.parent / "best.ckpt"
    tmp = best.parent / ".best.ckpt.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(best.name)
    os.replace(tmp, link)
    return link


def keep_earlier_metrics(loggers: list) -> None:
    """A run resumed in its own folder: move the CSV metrics written so far aside
    (``metrics.part1.csv``, ...), since Lightning's CSV logger replaces ``metrics.csv``."""
    for logger in loggers:
        if not isinstance(logger, pl.loggers.CSVLogger):
            continue
        current = Path(logger.log_dir) / "metrics.csv"
        if current.is_file():
            part = 1
            while (kept := current.with_name(f"metrics.part{part}.csv")).exists():
                part += 1
            os.replace(current, kept)
            log.info("resuming: the metrics logged so far are kept in %s", kept)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured task, test its best checkpoint, return the final metrics."""
    with open_dict(cfg):
        cfg.paths.data_root = str(Path(cfg.paths.data_root).expanduser().resolve())
    resolve_precision(cfg.trainer)
    if cfg.get("keep_freed_memory", True):
        keep_freed_memory()
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    datamodule, module = build_task(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    callbacks.append(RunRecorder(resolved, datamodule.tokenizer))
    callbacks.append(ShutDownProcessGroupAtExit())
    loggers = _instantiate_all(cfg.get("logger"))
    ckpt_path = resume_from(cfg, output_dir)
    if ckpt_path and rank_zero_only.rank == 0:
        keep_earlier_metrics(loggers)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log.info(describe_devices(trainer))
    for logger in trainer.loggers:  # the resolved config beside the metrics (hparams, wandb)
        logger.log_hyperparams(resolved)

    try:
        return _fit_and_test(cfg, trainer, datamodule, module, output_dir, ckpt_path)
    finally:
        finish_runs(trainer.loggers)


def resume_from(cfg: DictConfig, output_dir: Path) -> str | None:
    """``ckpt_path``, unless SLURM requeued this job: then its own newest checkpoint."""
    requeued = requeued_checkpoint(output_dir)
    if requeued is None:
        return cfg.get("ckpt_path")
    log.info("SLURM restarted this job: resuming from %s", requeued)
    return str(requeued)


def finish_runs(loggers: list) -> None:
    """Close wandb runs: the next job of a multirun (same process) must start its own run."""
    for logger in loggers:
        if isinstance(logger, pl.loggers.WandbLogger):
            logger.experiment.finish()


def _fit_and_test(
    cfg: DictConfig,
    trainer: pl.Trainer,
    datamodule: pl.LightningDataModule,
    module: pl.LightningModule,
    output_dir: Path,
    ckpt_path: str | None,
) -> dict[str, float]:
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "data/"))
    }
    checkpoints = trainer.checkpoint_callback
    best = checkpoints.best_model_path if checkpoints else ""
    if checkpoints and checkpoints.best_model_score is not None:
        # the monitored metric at the best checkpoint, e.g. val/acc_best (a sweep's objective)
        metrics[f"{cfg.task.monitor}_best"] = float(checkpoints.best_model_score)
    if cfg.get("test") and not trainer.fast_dev_run:
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in results[0].items()})
    if trainer.is_global_zero:  # under DDP every process gets here; one writes
        metrics_file = output_dir / "metrics.json"
        payload = {"best_checkpoint": best, **metrics}
        write_text_atomic(metrics_file, json.dumps(payload, indent=2, sort_keys=True) + "\n")
        if best:
            log.info("best checkpoint: %s", link_best_checkpoint(best))
        log.info("metrics: %s", metrics_file)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@reported
def run(cfg: DictConfig) -> float | None:
    """The Hydra task of each run or sweep job. Returns the best value of the task's validation
    metric: the objective of an Optuna sweep."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return train(cfg).get(f"{cfg.task.monitor}_best")


def main() -> None:
    """Console entry point (``python train.py`` / ``clipbert-train``)."""
    require_launcher_plugin(sys.argv[1:])
    run()
