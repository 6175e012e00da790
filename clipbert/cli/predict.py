"""``predict(cfg)``: run a trained checkpoint over a split, write predictions and metrics."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from clipbert.allocator import keep_freed_memory
from clipbert.callbacks.prediction_frames import PredictionFrames
from clipbert.cli.errors import reported
from clipbert.models.heads import SCORE_AGGREGATIONS
from clipbert.models.quantization import (
    DEFAULT_CALIBRATION_FRAMES,
    check_quantize,
    quantize_int8,
)
from clipbert.predictor import Predictor
from clipbert.reports.prediction_page import write_prediction_report
from clipbert.runs.build import check_vocabulary, evaluation_datamodule_config, rebuild_module
from clipbert.runs.configs import CONFIG_DIR
from clipbert.runs.devices import from_every_process, torch_device
from clipbert.runs.original import load_any_run
from clipbert.runs.selection import results_folder, select_checkpoint

log = logging.getLogger(__name__)

# predict.yaml's default hydra.run.dir: the results folder inside the checkpoint's run
OmegaConf.register_new_resolver("clipbert_results_folder", results_folder, replace=True)


def summary_table(metrics: dict[str, float], header: str) -> str:
    width = max(len(k) for k in metrics)
    rows = [header, f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    rows += [f"{k:<{width}}  {v:.4f}" for k, v in metrics.items()]
    return "\n".join(rows)


def every_process_outputs(outputs: list) -> list:
    """The prediction batches of all processes, in the split's order: each process predicted
    one contiguous block of it (``ContiguousShard``), so rank after rank is the split's order.
    One process: its own outputs."""
    return [batch for rank_outputs in from_every_process(outputs) for batch in rank_outputs]


REPORT_CHOICES = ("auto", True, False)
MIN_THUMBNAIL_HEIGHT = 8  # px: smaller thumbnails show nothing


def prediction_accelerator(cfg: DictConfig) -> str:
    """``cfg.accelerator``, except that ``auto`` means the CPU for ``quantize=int8``, a CPU
    model (an explicit GPU is then refused by ``check_quantize``)."""
    return "cpu" if cfg.get("quantize") and cfg.accelerator == "auto" else cfg.accelerator


def report_frames(cfg: DictConfig) -> PredictionFrames | None:
    """The callback that keeps the report's thumbnails; None for ``report=false``.
    ``report=auto`` skips splits beyond ``report_max_examples``; ``report=true`` never does."""
    choice = cfg.get("report", "auto")
    if choice not in REPORT_CHOICES:
        raise ValueError(f"report must be auto, true or false, got '{choice}'")
    if choice is False:
        return None
    limit = cfg.get("report_max_examples") if choice == "auto" else None
    if limit is not None and limit < 0:
        raise ValueError(f"report_max_examples must be >= 0, got {limit}")
    height = cfg.get("report_thumbnail_height")
    if height is not None and height < MIN_THUMBNAIL_HEIGHT:
        raise ValueError(
            f"report_thumbnail_height must be null (by frames per video) or >= "
            f"{MIN_THUMBNAIL_HEIGHT} px, got {height}"
        )
    return PredictionFrames(max_examples=limit, height=height)


def predict(cfg: DictConfig) -> dict[str, float]:
    """Predict ``cfg.split`` with a checkpoint; write our outputs and the original's.

    The checkpoint is ``cfg.ckpt_path``, or the one ``cfg.run_dir`` and ``cfg.step`` pick
    (:mod:`clipbert.runs.selection`): a clipbert ``.ckpt``, a model folder (``convert.py
    to=folder``) or, with ``cfg.task`` naming its task, an original ClipBERT checkpoint (whose
    answers ``cfg.ans2label`` may give).
    """
    if cfg.get("keep_freed_memory", True):
        keep_freed_memory()
    if cfg.score_agg is not None and cfg.score_agg not in SCORE_AGGREGATIONS:
        raise ValueError(f"score_agg must be one of {SCORE_AGGREGATIONS}, got '{cfg.score_agg}'")
    if cfg.n_clips is not None and cfg.n_clips < 1:
        raise ValueError(f"n_clips must be >= 1, got {cfg.n_clips}")
    accelerator = prediction_accelerator(cfg)
    check_quantize(cfg.get("quantize"), torch_device(accelerator), str(cfg.precision))
    # PyTorch lets cuDNN use TF32 by default, which moves logits ~1e-3 off the original's fp32.
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32
    checkpoint = select_checkpoint(cfg.get("ckpt_path"), cfg.get("run_dir"), cfg.get("step"))
    if not checkpoint.exists():
        raise FileNotFoundError(f"ckpt_path={checkpoint}: no such file or model folder")
    if cfg.get("video") or cfg.get("image"):
        return predict_one(cfg, checkpoint)
    output_dir = Path(cfg.paths.output_dir)
    log.info("checkpoint %s; results in %s", checkpoint, output_dir)
    run = load_any_run(checkpoint, cfg, ans2label=cfg.get("ans2label"))
    datamodule_cfg = evaluation_datamodule_config(
        run,
        cfg.split,
        run.write_tokenizer(output_dir / "tokenizer"),
        task_datamodule=cfg.task.datamodule if cfg.get("task") is not None else None,
        data_root=cfg.data_root,
        txt_db=cfg.txt_db,
        vis_db=cfg.vis_db,
        ans2label=cfg.get("ans2label"),
        n_clips=cfg.n_clips,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        storage=cfg.storage,
    )
    datamodule = instantiate(datamodule_cfg)
    module = rebuild_module(
        run, image_size=datamodule.image_size, score_agg=cfg.score_agg, compile=cfg.compile
    )
    if cfg.get("quantize"):
        module = quantize_int8(
            module,
            cfg.get("quantize_cnn", "auto"),
            cfg.get("quantize_calibration_frames", DEFAULT_CALIBRATION_FRAMES),
            inplace=True,
        )
    check_vocabulary(datamodule, run.answer_vocabulary)
    frames = report_frames(cfg)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=cfg.devices,
        precision=cfg.precision,
        logger=False,
        enable_model_summary=False,
        default_root_dir=str(output_dir),
        callbacks=[frames] if frames else [],
    )
    outputs = every_process_outputs(trainer.predict(module, datamodule=datamodule))
    videos = frames.every_process_videos() if frames and frames.enabled else None
    writer = trainer.is_global_zero
    report = module.write_predictions(outputs, output_dir if writer else None, datamodule)
    if not writer:  # the metrics were computed together; the first process reports them
        return report.metrics
    if videos is not None:
        title = f"{cfg.txt_db or cfg.split} predicted by {checkpoint}"
        start = time.perf_counter()
        report.files.append(write_prediction_report(output_dir, videos, title))
        log.info(
            "report cost: thumbnails %.2f s, page %.2f s",
            frames.seconds,
            time.perf_counter() - start,
        )
    sampling = datamodule.eval_sampling
    header = (
        f"{cfg.split}: {report.size}, n_clips={sampling.n_clips}, "
        f"num_frames={sampling.num_frames}, score_agg={module.score_agg}"
    )
    metrics = report.metrics
    print(summary_table(metrics, header) if metrics else header + " (no gold answers)")
    print("wrote:\n" + "\n".join(f"  {path}" for path in report.files))
    return metrics


def predict_one(cfg: DictConfig, checkpoint: Path) -> dict[str, float]:
    """``video=`` or ``image=`` with ``question=`` (and ``options=``) or ``caption=``: print
    the answers with their probabilities."""
    if cfg.get("video") and cfg.get("image"):
        raise ValueError("give video=PATH or image=PATH, not both")
    if cfg.top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {cfg.top_k}")
    visual = cfg.video or cfg.image
    device = torch_device(prediction_accelerator(cfg))
    run = load_any_run(checkpoint, cfg, ans2label=cfg.get("ans2label"))
    predictor = Predictor.from_run(
        run,
        device,
        cfg.n_clips,
        cfg.score_agg,
        precision=str(cfg.precision),
        quantize=cfg.get("quantize"),
    )
    if cfg.get("caption"):
        score = predictor.match(visual, cfg.caption)
        print(f"{visual}\ncaption: {cfg.caption}\np(match) = {score:.4f}")
        return {"match": score}
    if not cfg.get("question"):
        raise ValueError(
            "give question=TEXT (with options=[...] for multiple choice) or caption=TEXT"
        )
    if cfg.get("options"):
        answers = predictor.choose(visual, cfg.question, list(cfg.options))
    else:
        answers = predictor.answer(visual, cfg.question, cfg.top_k)
    width = max(len(a.answer) for a in answers)
    print(f"{visual}\nquestion: {cfg.question}")
    print("\n".join(f"  {a.answer:<{width}}  {a.prob:.4f}" for a in answers))
    return {a.answer: a.prob for a in answers}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
@reported
def main(cfg: DictConfig) -> None:
    """Console entry point (``python predict.py`` / ``clipbert-predict``)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    predict(cfg)
