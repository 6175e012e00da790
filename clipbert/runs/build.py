"""Configs -> objects, once for every caller: the task's data and model for training, a trained
run's model and evaluation data for prediction.

The model's size and input depend on its data: the tokenizer's vocabulary, the answer
vocabulary of open-ended QA and the frames' ``task.datamodule.image_size`` (the original's
``max_img_size``, a data setting there too), which the model's input transform applies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from clipbert.data.object_storage import is_remote
from clipbert.models.checkpoints import initialize_from
from clipbert.runs.record import TrainedRun
from clipbert.tasks.base import ClipBertTask

log = logging.getLogger(__name__)

# Keys of cfg.model that are not backbone arguments: init_from is applied to the whole task
# module once it is built; clip_order (always "batched") is recorded by runs of older releases.
NOT_BACKBONE_KEYS = ("init_from", "clip_order")


def build_module(
    model_cfg: Mapping[str, Any],
    module_cfg: Mapping[str, Any],
    *,
    image_size: int,
    vocab_size: int | None = None,
    answer_vocabulary: list[str] | None = None,
) -> ClipBertTask:
    """The task module ``module_cfg`` names, on the backbone ``model_cfg`` names, sized by its
    data: frames at ``image_size``, ``vocab_size`` tokens, the answers of open-ended QA."""
    backbone_cfg = {k: v for k, v in model_cfg.items() if k not in NOT_BACKBONE_KEYS}
    backbone = instantiate(backbone_cfg, image_size=image_size, vocab_size=vocab_size)
    answers = {} if answer_vocabulary is None else {"answer_vocabulary": answer_vocabulary}
    return instantiate(module_cfg, backbone=backbone, **answers)


def build_task(cfg: DictConfig) -> tuple[pl.LightningDataModule, ClipBertTask]:
    """Training: the datamodule (its data prepared), then the model sized by it, initialised
    from ``model.init_from`` when given."""
    datamodule = instantiate(cfg.task.datamodule)
    # The model's size depends on the prepared data; Lightning's own later call is a no-op.
    datamodule.prepare_data()
    module = build_module(
        cfg.model,
        cfg.task.module,
        image_size=datamodule.image_size,
        vocab_size=len(datamodule.tokenizer),
        answer_vocabulary=datamodule.answer_vocabulary,
    )
    if cfg.model.get("init_from"):
        initialize_from(module, cfg.model.init_from).log(log, cfg.model.init_from)
    return datamodule, module


def rebuild_module(
    run: TrainedRun,
    *,
    image_size: int | None = None,
    score_agg: str | None = None,
    compile: bool = False,
) -> ClipBertTask:
    """The trained module, its weights loaded strictly, in eval mode. ``image_size`` is that
    of the data it will read (the run's own by default); whether to ``torch.compile`` and how
    to aggregate clips are this use's choices, not the training run's."""
    config = OmegaConf.create(run.config)
    model_cfg = config.model
    model_cfg.cnn_weights = None  # the checkpoint holds every weight
    model_cfg.compile = compile
    model_cfg.bert = {
        "pretrained_dir": None,
        "attn_implementation": model_cfg.bert.attn_implementation,
        **run.bert_config,
    }
    module = build_module(
        model_cfg,
        config.task.module,
        image_size=config.task.datamodule.image_size if image_size is None else image_size,
        answer_vocabulary=run.answer_vocabulary,
    )
    module.load_state_dict(run.state_dict, strict=True)
    if score_agg is not None:
        module.score_agg = score_agg
    return module.eval()


def evaluation_datamodule_config(
    run: TrainedRun,
    split: str,
    tokenizer_dir: Path,
    *,
    task_datamodule: Mapping[str, Any] | None = None,
    data_root: str | None = None,
    txt_db: str | None = None,
    vis_db: str | None = None,
    ans2label: str | None = None,
    n_clips: int | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    storage: Mapping[str, Any] | None = None,
) -> DictConfig:
    """The datamodule config to predict ``split`` with the run: the training run's own, or
    ``task_datamodule`` (another task's data, e.g. the MSRVTT multiple-choice test for a
    retrieval model), with the run's tokenizer and these overrides. ``data_root`` moves the
    run's stores to another root; ``txt_db`` is one jsonl file for the split (the original's
    ``inference_txt_db``), ``vis_db`` another store, ``ans2label`` another answer vocabulary
    file (which ``check_vocabulary`` then holds to the run's); ``storage``'s set values replace
    the recorded ``task.datamodule.storage`` ones (another endpoint for the run's s3:// stores)."""
    if task_datamodule is not None:
        dm = OmegaConf.create(OmegaConf.to_container(task_datamodule, resolve=True))
    else:
        dm = OmegaConf.create(run.config).task.datamodule
        if data_root:
            old_root = run.config["paths"]["data_root"]
            new_root = str(Path(data_root).resolve())
            for key in ("txt_db", "vis_db", "ans2label"):
                if dm.get(key) and dm[key].startswith(old_root):
                    dm[key] = new_root + dm[key][len(old_root) :]
    dm.tokenizer_dir = str(tokenizer_dir)
    dm.prepare = None
    dm.predict_split = split
    if txt_db:
        dm.splits[split] = str(Path(txt_db).expanduser().resolve())
    if vis_db:
        dm.vis_db = vis_db if is_remote(vis_db) else str(Path(vis_db).expanduser().resolve())
    if ans2label:
        dm.ans2label = str(Path(ans2label).expanduser().resolve())
    if n_clips is not None:
        dm.eval_sampling.n_clips = n_clips
    if batch_size is not None:
        dm.eval_batch_size = batch_size
    if num_workers is not None:
        dm.num_workers = num_workers
    chosen = {key: value for key, value in (storage or {}).items() if value is not None}
    if chosen:
        dm.storage = {**(dm.get("storage") or {}), **chosen}
    return dm


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
