"""Checkpoints of the original ClipBERT code as runs that ``predict.py`` can use, and the one
loader of every run source (``load_any_run``: a ``.ckpt``, a model folder or an original ``.pt``).

An original ``model_step_N.pt`` holds weights only. Everything else a prediction needs
(answer vocabulary, tokenizer, sampling, image size) comes from our task config, as it came
from the original's own config file; the architecture is read off the weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor

from clipbert.data.annotations import answers_by_label, load_ans2label
from clipbert.data.text import load_tokenizer
from clipbert.models.checkpoints import (
    PRETRAINING_HEADS,
    convert_original_state_dict,
    is_original_layout,
    load_plain,
    unwrap_state_dict,
)
from clipbert.models.original import infer_bert_config
from clipbert.runs.configs import check_targets
from clipbert.runs.model_folder import load_model_folder
from clipbert.runs.record import TrainedRun, tokenizer_files

log = logging.getLogger(__name__)

# Every original checkpoint ran detectron2's ResNet: FrozenBN, stride in the 1x1 conv. These
# change outputs, not shapes, so a strict load alone would not catch a config that differs.
ORIGINAL_CNN = {"norm": "frozen_bn", "stride_in_1x1": True}


def run_from_original(state_dict: dict[str, Tensor], cfg: DictConfig) -> TrainedRun:
    """Pair an original fine-tuned state dict with the task and model config in ``cfg``."""
    sd, dropped = convert_original_state_dict(state_dict)
    sd = {k: v for k, v in sd.items() if not k.startswith(PRETRAINING_HEADS)}
    if "head.classifier.2.weight" not in sd:
        raise ValueError(
            "this original checkpoint has no fine-tuned classifier (transformer.classifier.*): "
            "it is a pre-trained starting point. Finetune it with "
            "`python train.py task=<task> model.init_from=<path>`."
        )
    log.info("original checkpoint: %d tensors used, %d unused dropped", len(sd), len(dropped))
    listed = cfg.model.bert
    hidden = sd["backbone.bert.embeddings.word_embeddings.weight"].shape[1]
    heads = listed.num_attention_heads if listed.hidden_size == hidden else None
    datamodule = cfg.task.datamodule
    ans2label = datamodule.get("ans2label")
    answers = (
        {"answer_vocabulary": answers_by_label(load_ans2label(ans2label))} if ans2label else {}
    )
    model = OmegaConf.to_container(cfg.model, resolve=True)
    for key, value in ORIGINAL_CNN.items():
        if model["cnn"].get(key) != value:
            log.warning(
                "original checkpoint: model.cnn.%s=%s (was %s)", key, value, model["cnn"].get(key)
            )
            model["cnn"][key] = value
    config = {
        "paths": {"data_root": cfg.paths.data_root},
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "model": model,
    }
    return TrainedRun(
        state_dict=sd,
        hyper_parameters={
            **answers,
            "answer_types": list(cfg.task.module.get("answer_types", [])),
        },
        config=config,
        bert_config=infer_bert_config(sd, heads),
        tokenizer_files=tokenizer_files(load_tokenizer(datamodule.tokenizer_dir)),
    )


def load_any_run(path: str | Path, cfg: DictConfig, ans2label: str | None = None) -> TrainedRun:
    """A clipbert ``.ckpt`` or model folder as recorded, or an original checkpoint paired with
    ``cfg.task`` (and with the answers of ``ans2label``, the original's ``--ans2label_path``,
    if given).

    ``cfg`` is a predict/convert config: ``task=NAME`` composes the task group into it, and
    its ``paths.data_root`` becomes ``data_root`` (when given), made absolute.
    """
    with open_dict(cfg):
        cfg.paths.data_root = str(Path(cfg.data_root or cfg.paths.data_root).expanduser().resolve())
        if ans2label and cfg.get("task") is not None:
            cfg.task.datamodule.ans2label = str(Path(ans2label).expanduser().resolve())
    trusted = cfg.get("trusted_targets") or ()
    if Path(path).is_dir():
        return load_model_folder(path, trusted)
    checkpoint = load_plain(path)
    run = TrainedRun.from_checkpoint(checkpoint)
    if run is not None:
        check_targets(run.config, f"the run record of {path}", trusted)
        return run
    state_dict = unwrap_state_dict(checkpoint, path)
    if not is_original_layout(state_dict):
        raise ValueError(
            f"{path} is neither a clipbert checkpoint (no run record) nor an original ClipBERT "
            "state dict (no cnn.*/transformer.* keys)"
        )
    if cfg.get("task") is None:
        raise ValueError(
            f"{path} is an original ClipBERT checkpoint, which carries no task config: name the "
            "task it was fine-tuned for, e.g. `task=msrvtt_qa`"
        )
    return run_from_original(state_dict, cfg)
