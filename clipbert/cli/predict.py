"""``predict(cfg)``: run a trained checkpoint over a split, write predictions and metrics."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from clipbert.allocator import keep_freed_memory
from clipbert.cli import CONFIG_DIR
from clipbert.cli.errors import reported
from clipbert.cli.original_run import load_any_run
from clipbert.cli.outputs import write_qa, write_retrieval, write_retrieval_mc
from clipbert.cli.run_record import LoadedRun
from clipbert.cli.train import build_backbone, data_kwargs
from clipbert.tasks.base import SCORE_AGGREGATIONS
from clipbert.tasks.retrieval import RetrievalTask

log = logging.getLogger(__name__)


def _relocate(value: str, old_root: str, new_root: str) -> str:
    return new_root + value[len(old_root) :] if value.startswith(old_root) else value


def datamodule_config(run: LoadedRun, cfg: DictConfig, tokenizer_dir: Path) -> DictConfig:
    """The training run's datamodule config, or that of ``task=NAME`` when given (e.g. the
    MSRVTT multiple-choice test for a retrieval model), with this prediction's overrides."""
    train_cfg = OmegaConf.create(run.config)
    if cfg.get("task") is not None:
        dm = OmegaConf.create(OmegaConf.to_container(cfg.task.datamodule, resolve=True))
    else:
        dm = train_cfg.task.datamodule
    if cfg.data_root and cfg.get("task") is None:
        old_root, new_root = train_cfg.paths.data_root, str(Path(cfg.data_root).resolve())
        for key in ("txt_db", "vis_db", "ans2label"):
            if dm.get(key):
                dm[key] = _relocate(dm[key], old_root, new_root)
    dm.tokenizer_dir = str(tokenizer_dir)
    dm.prepare = None
    dm.predict_split = cfg.split
    if cfg.txt_db:  # one jsonl file, as the original's inference_txt_db
        dm.splits[cfg.split] = str(Path(cfg.txt_db).expanduser().resolve())
    if cfg.vis_db:
        dm.vis_db = str(Path(cfg.vis_db).expanduser().resolve())
    if cfg.n_clips is not None:
        dm.eval_sampling.n_clips = cfg.n_clips
    if cfg.batch_size is not None:
        dm.eval_batch_size = cfg.batch_size
    if cfg.num_workers is not None:
        dm.num_workers = cfg.num_workers
    return dm


def build_module(
    run: LoadedRun, score_agg: str | None, compile: bool = False
) -> pl.LightningModule:
    """Rebuild the trained module from the run record and load its weights strictly.
    Whether to ``torch.compile`` is this prediction's choice, not the training run's."""
    train_cfg = OmegaConf.create(run.config)
    model_cfg = train_cfg.model
    model_cfg.cnn_weights = None  # the checkpoint holds every weight
    model_cfg.compile = compile
    model_cfg.bert = {
        "pretrained_dir": None,
        "attn_implementation": model_cfg.bert.attn_implementation,
        **run.bert_config,
    }
    backbone = build_backbone(model_cfg)
    module = instantiate(
        train_cfg.task.module,
        backbone=backbone,
        **data_kwargs(run.hyper_parameters.get("answer_vocabulary")),
    )
    module.load_state_dict(run.state_dict, strict=True)
    if score_agg is not None:
        module.score_agg = score_agg
    return module.eval()


def check_vocabulary(datamodule: pl.LightningDataModule, trained: list[str] | None) -> None:
    """The split's ans2label must be the one the model was trained with: labels are positions
    in it, so another file would score every question against the wrong answers."""
    labels = getattr(datamodule, "answer_vocabulary", None)
    if trained is None or labels is None or list(labels) == list(trained):
        return
    shorter = min(len(labels), len(trained))
    where = next((i for i in range(shorter) if labels[i] != trained[i]), shorter)
    raise ValueError(
        f"{datamodule.ans2label_path} ({len(labels)} answers) is not the answer vocabulary of "
        f"the checkpoint ({len(trained)} answers; they differ at label {where}); predict with "
        "the ans2label the model was trained with"
    )


def summary_table(metrics: dict[str, float], header: str) -> str:
    width = max(len(k) for k in metrics)
    rows = [header, f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    rows += [f"{k:<{width}}  {v:.4f}" for k, v in metrics.items()]
    return "\n".join(rows)


def predict(cfg: DictConfig) -> dict[str, float]:
    """Predict ``cfg.split`` with ``cfg.ckpt_path``; write our outputs and the original's.

    ``cfg.ckpt_path`` is a clipbert ``.ckpt`` or, with ``cfg.task`` naming its task, an
    original ClipBERT checkpoint.
    """
    if cfg.get("keep_freed_memory", True):
        keep_freed_memory()
    if cfg.score_agg is not None and cfg.score_agg not in SCORE_AGGREGATIONS:
        raise ValueError(f"score_agg must be one of {SCORE_AGGREGATIONS}, got '{cfg.score_agg}'")
    if cfg.n_clips is not None and cfg.n_clips < 1:
        raise ValueError(f"n_clips must be >= 1, got {cfg.n_clips}")
    # PyTorch lets cuDNN use TF32 by default, which moves logits ~1e-3 off the original's fp32.
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32
    if cfg.get("video") or cfg.get("image"):
        return predict_one(cfg)
    output_dir = Path(cfg.paths.output_dir)
    run = load_any_run(cfg.ckpt_path, cfg)
    tokenizer_dir = run.write_tokenizer(output_dir / "tokenizer")
    datamodule = instantiate(datamodule_config(run, cfg, tokenizer_dir))
    module = build_module(run, cfg.score_agg, cfg.compile)
    check_vocabulary(datamodule, module.hparams.get("answer_vocabulary"))
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        precision=cfg.precision,
        logger=False,
        enable_model_summary=False,
        default_root_dir=str(output_dir),
    )
    batches = trainer.predict(module, datamodule=datamodule)

    sampling = datamodule.eval_sampling
    setting = (
        f"n_clips={sampling.n_clips}, num_frames={sampling.num_frames}, "
        f"score_agg={module.score_agg}"
    )
    if isinstance(batches[0], dict):  # retrieval: score columns of the caption x video matrix
        texts = datamodule.ranking_texts(cfg.split)
        metrics, files = write_retrieval(batches, output_dir, texts)
        header = f"{cfg.split}: {len(texts)} captions x {len(texts.video_ids)} videos, {setting}"
    else:
        records = [record for batch in batches for record in batch]
        answer_types = getattr(module, "answer_types", [])
        metrics, files = write_qa(
            records, output_dir, module.hparams.get("answer_vocabulary"), answer_types
        )
        if isinstance(module, RetrievalTask):  # the MSRVTT multiple-choice test
            files += write_retrieval_mc(records, output_dir, metrics)
        header = f"{cfg.split}: {len(records)} questions, {setting}"
    print(summary_table(metrics, header) if metrics else header + " (no gold answers)")
    print("wrote:\n" + "\n".join(f"  {path}" for path in files))
    return metrics


def predict_one(cfg: DictConfig) -> dict[str, float]:
    """``video=`` or ``image=`` with ``question=`` (and ``options=``) or ``caption=``: print
    the answers with their probabilities."""
    from clipbert.predictor import Predictor  # the predictor builds on this module

    if cfg.get("video") and cfg.get("image"):
        raise ValueError("give video=PATH or image=PATH, not both")
    if cfg.top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {cfg.top_k}")
    visual = cfg.video or cfg.image
    device = "cuda" if cfg.accelerator in ("gpu", "cuda") else "cpu"
    if cfg.accelerator == "auto" and torch.cuda.is_available():
        device = "cuda"
    predictor = Predictor.from_checkpoint(
        cfg.ckpt_path, device, cfg.n_clips, cfg.score_agg, cfg.trusted_targets or ()
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
