"""Checkpoint reading and loading: original ClipBERT keys -> ours, with a report of every key.

Converted keys are relative to a module that holds the body as ``backbone``
(``ClipBertBackbone``) and the task head as ``head`` (``MLPClassifier``); see
reference/clipbert-original.md section 2.5 for the mapping.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

_RESNET = "cnn.feature.backbone."
_STAGES = {f"res{k}": f"layer{k - 1}" for k in (2, 3, 4, 5)}
# Prefix renames other than the ResNet's, tried in order; the first match wins.
_PREFIXES = (
    ("cnn.grid_encoder.", "backbone.grid_encoder."),
    ("transformer.bert.visual_embeddings.position_embeddings.", None),  # never read in forward
    ("transformer.bert.visual_embeddings.", "backbone.visual_embeddings."),
    ("transformer.bert.embeddings.", "backbone.bert.embeddings."),
    ("transformer.bert.encoder.", "backbone.bert.encoder."),
    ("transformer.bert.pooler.", "backbone.bert.pooler."),
    ("transformer.classifier.", "head.classifier."),
    ("transformer.cls.", "head."),  # MLM + ITM heads of the pre-trained checkpoint
)
# The pre-trained release's MLM + ITM heads, after conversion; unused by fine-tuning tasks.
PRETRAINING_HEADS = ("head.predictions.", "head.seq_relationship.")
# A fine-tuning task's auxiliary MLM head (retrieval's ``mlm_weight``) goes back to the
# original's MLM head name.
_EXPORTED_AUXILIARY = (("mlm_head.", "transformer.cls.predictions."),)
_BLOCK_PART = re.compile(r"(res[2-5])\.(\d+)\.(conv[123]|shortcut)\.(norm\.)?(\w+)$")


def _resnet_key(name: str) -> str | None:
    """detectron2 ResNet name (after ``cnn.feature.backbone.``) -> torchvision-style name."""
    if name.startswith("stem.conv1."):
        rest = name.removeprefix("stem.conv1.")
        return "bn1." + rest.removeprefix("norm.") if rest.startswith("norm.") else "conv1." + rest
    match = _BLOCK_PART.match(name)
    if match is None:
        return None
    stage, block, part, norm, leaf = match.groups()
    if part == "shortcut":
        module = "downsample.1" if norm else "downsample.0"
    else:
        module = part.replace("conv", "bn") if norm else part
    return f"{_STAGES[stage]}.{block}.{module}.{leaf}"


def _original_resnet_key(name: str) -> str:
    """Inverse of ``_resnet_key``: torchvision-style name -> detectron2 name."""
    stem = re.fullmatch(r"(conv1|bn1)\.(\w+)", name)
    if stem:
        module, leaf = stem.groups()
        return f"stem.conv1.{leaf}" if module == "conv1" else f"stem.conv1.norm.{leaf}"
    layer, block, module, leaf = re.fullmatch(r"layer(\d)\.(\d+)\.([\w.]+)\.(\w+)", name).groups()
    part = {
        "downsample.0": "shortcut",
        "downsample.1": "shortcut.norm",
        **{f"conv{j}": f"conv{j}" for j in (1, 2, 3)},
        **{f"bn{j}": f"conv{j}.norm" for j in (1, 2, 3)},
    }[module]
    return f"res{int(layer) + 1}.{block}.{part}.{leaf}"


def to_original_state_dict(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our task-module keys -> the original ``ClipBert`` keys, so weights can go back.

    BatchNorm step counters (``num_batches_tracked``), which the original's FrozenBN lacks,
    are left out.
    """
    inverse = [*_EXPORTED_AUXILIARY, *((new, old) for old, new in _PREFIXES if new is not None)]
    original = {}
    for key, value in sd.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith("backbone.cnn."):
            original[_RESNET + _original_resnet_key(key.removeprefix("backbone.cnn."))] = value
            continue
        prefix = next((p for p in inverse if key.startswith(p[0])), None)
        if prefix is None:
            raise KeyError(f"no original name for '{key}'")
        original[prefix[1] + key.removeprefix(prefix[0])] = value
    return original


# What the original's model holds but its forward pass never reads: detectron2's detector heads
# of the grid-feat R50 (shapes fixed by its config) and a 1-D visual position table.
_UNREAD_DETECTOR_SHAPES = {
    "proposal_generator.anchor_generator.cell_anchors.0": (15, 4),
    "proposal_generator.rpn_head.conv.weight": (2048, 2048, 3, 3),
    "proposal_generator.rpn_head.conv.bias": (2048,),
    "proposal_generator.rpn_head.objectness_logits.weight": (15, 2048, 1, 1),
    "proposal_generator.rpn_head.objectness_logits.bias": (15,),
    "proposal_generator.rpn_head.anchor_deltas.weight": (60, 2048, 1, 1),
    "proposal_generator.rpn_head.anchor_deltas.bias": (60,),
    "roi_heads.box_head.fc1.weight": (1024, 2048),
    "roi_heads.box_head.fc1.bias": (1024,),
    "roi_heads.box_head.fc2.weight": (1024, 1024),
    "roi_heads.box_head.fc2.bias": (1024,),
    "roi_heads.box_predictor.cls_score.weight": (1601, 1024),
    "roi_heads.box_predictor.cls_score.bias": (1601,),
    "roi_heads.box_predictor.bbox_pred.weight": (6400, 1024),
    "roi_heads.box_predictor.bbox_pred.bias": (6400,),
    "roi_heads.attribute_predictor.obj_embed.weight": (1601, 256),
    "roi_heads.attribute_predictor.fc.0.weight": (512, 1280),
    "roi_heads.attribute_predictor.fc.0.bias": (512,),
    "roi_heads.attribute_predictor.attr_score.weight": (400, 512),
    "roi_heads.attribute_predictor.attr_score.bias": (400,),
}
_VISUAL_POSITIONS = "transformer.bert.visual_embeddings.position_embeddings.weight"


def with_unread_original_keys(original: dict[str, Tensor]) -> dict[str, Tensor]:
    """An original-layout state dict completed with the keys the original's model has but
    never reads (detector heads, the 1-D visual position table), so that it holds the
    released checkpoints' exact key list and the original code loads it strictly. They are
    zeros that share one element of storage: a few bytes on disk, whatever their shape."""
    words = original["transformer.bert.embeddings.word_embeddings.weight"]
    positions = original["transformer.bert.embeddings.position_embeddings.weight"]
    zero = torch.zeros((), dtype=words.dtype)
    unread = {
        "cnn.feature." + k: zero.expand(shape) for k, shape in _UNREAD_DETECTOR_SHAPES.items()
    }
    unread[_VISUAL_POSITIONS] = zero.expand(positions.shape[0], words.shape[1])
    return {**original, **unread}


def _convert_key(key: str) -> str | None:
    if key.startswith(_RESNET):
        name = _resnet_key(key.removeprefix(_RESNET))
        return None if name is None else "backbone.cnn." + name
    for old, new in _PREFIXES:
        if key.startswith(old):
            return None if new is None else new + key.removeprefix(old)
    return None


def convert_original_state_dict(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Rename an original ClipBERT state dict to ours; floats become float32.

    Returns the converted dict and the original keys it dropped: the detector heads
    (``cnn.feature.proposal_generator.*``, ``cnn.feature.roi_heads.*``), the unused visual
    ``position_embeddings``, and anything else it does not know (for the caller to report).
    A ``module.`` prefix (from DataParallel/Horovod wrappers) is stripped first.
    """
    converted: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in sd.items():
        new_key = _convert_key(key.removeprefix("module."))
        if new_key is None:
            dropped.append(key)
            continue
        converted[new_key] = value.float() if value.is_floating_point() else value
    return converted, dropped


@dataclass
class LoadReport:
    """What a weight load did, key by key, so users can see nothing was silently lost."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, file, model
    dropped: list[str] = field(default_factory=list)  # known-unused original keys

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}, "
            f"dropped {len(self.dropped)} unused original keys"
        )

    def log(self, logger: logging.Logger, source: str) -> None:
        """The summary, then every key that did not load as it is, one line each."""
        logger.info("weights from %s: %s", source, self.summary())
        for key in self.missing:
            logger.warning("  not in the file, left at init: %s", key)
        for key, file_shape, model_shape in self.mismatched:
            logger.warning(
                "  shape %s in the file, %s here, left at init: %s", file_shape, model_shape, key
            )
        for key in self.unexpected:
            logger.warning("  not used by the model: %s", key)


def load_plain(path: str | Path) -> object:
    """``torch.load`` that never unpickles code: tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} holds pickled objects other than tensors and plain containers; it is "
            "refused because loading it could run code. Re-save its state dict with "
            "torch.save(model.state_dict(), path)."
        ) from err


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A flat state dict from a ``.pt``/``.pth``/``.bin`` or ``.safetensors`` file.

    Never unpickles code; unwraps ``{"model": ...}`` (detectron2), ``{"state_dict": ...}``
    (Lightning) and ``{"model_state_dict": ...}`` (the original's ``restore.pt``) containers.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        from safetensors.torch import load_file

        return load_file(str(path))
    return unwrap_state_dict(load_plain(path), path)


def unwrap_state_dict(obj: object, path: str | Path) -> dict[str, Tensor]:
    """The flat state dict inside a loaded checkpoint (see ``read_state_dict``)."""
    for wrapper in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} is not a state dict (a mapping of names to tensors)")
    return obj


def rename_layer_norm(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Old BERT files name LayerNorm parameters gamma/beta; modern modules say weight/bias."""
    renamed = {}
    for key, value in sd.items():
        if key.endswith(".gamma"):
            key = key.removesuffix(".gamma") + ".weight"
        elif key.endswith(".beta"):
            key = key.removesuffix(".beta") + ".bias"
        renamed[key] = value
    return renamed


def load_weights(module: nn.Module, sd: dict[str, Tensor], *, strict: bool = False) -> LoadReport:
    """Load ``sd`` into ``module`` and report every key.

    Non-strict (finetuning, as the original's loader): tensors whose shape differs from the
    model's are skipped and reported. Strict (inference): any missing, unexpected or
    mismatched key is an error that lists them.
    """
    own = module.state_dict()
    report = LoadReport()
    selected = {}
    for key, value in sd.items():
        if key not in own:
            report.unexpected.append(key)
        elif value.shape != own[key].shape:
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            selected[key] = value.to(own[key].dtype)
            report.loaded.append(key)
    report.missing = [key for key in own if key not in sd]
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise ValueError(
            "strict load failed: "
            + report.summary()
            + f"; missing {report.missing[:5]}, unexpected {report.unexpected[:5]}, "
            f"mismatched {report.mismatched[:5]}"
        )
    module.load_state_dict(selected, strict=False)
    return report


BERT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def bert_weights_file(path: str | Path) -> Path:
    """The weights file of a BERT folder (safetensors preferred), or ``path`` if it is a file."""
    path = Path(path)
    if path.is_dir():
        for name in BERT_WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path} holds none of {', '.join(BERT_WEIGHT_FILES)}")
    if not path.is_file():
        raise FileNotFoundError(f"BERT weights not found: {path}")
    return path


def load_bert_weights(bert: nn.Module, path: str | Path) -> LoadReport:
    """Load a bert-base-uncased checkpoint (folder or file) into an HF ``BertModel``.

    Takes ``BertForPreTraining`` or ``BertModel`` key names and renames the old gamma/beta
    LayerNorm names, which the original's loader silently failed to load. The MLM/NSP heads
    (``cls.*``) and position-id buffers are reported as dropped.
    """
    sd = rename_layer_norm(read_state_dict(bert_weights_file(path)))
    kept, dropped = {}, []
    for key, value in sd.items():
        key = key.removeprefix("bert.")
        if key.startswith("cls.") or key.endswith("position_ids"):
            dropped.append(key)
        else:
            kept[key] = value
    report = load_weights(bert, kept)
    report.dropped = dropped
    return report


def load_bert_pretraining_heads(heads: nn.Module, path: str | Path) -> LoadReport:
    """Load a bert-base-uncased checkpoint's MLM transform and bias and its next-sentence head
    (``cls.*``) into :class:`~clipbert.models.heads.PretrainingHeads`, as the original starts
    its pre-training (the NSP head becomes the ITM head, its labels flipped). The decoder is
    the word embeddings, loaded with BERT, so its keys are left out here."""
    sd = rename_layer_norm(read_state_dict(bert_weights_file(path)))
    heads_sd = {
        k.removeprefix("cls."): v
        for k, v in sd.items()
        if k.startswith("cls.") and not k.startswith("cls.predictions.decoder.")
    }
    report = load_weights(heads, heads_sd)
    report.missing = [k for k in report.missing if not k.startswith("predictions.decoder.")]
    report.dropped = [k for k in sd if not k.startswith("cls.")]
    return report


def load_grid_feat(cnn: nn.Module, path: str | Path) -> LoadReport:
    """Load the grid-feat R50 detectron2 ``.pth`` (keys relative to the original's
    ``cnn.feature``) into our ResNet; the detector heads are reported as dropped."""
    sd = read_state_dict(path)
    converted, dropped = convert_original_state_dict(
        {"cnn.feature." + k.removeprefix("module."): v for k, v in sd.items()}
    )
    prefix = "backbone.cnn."
    report = load_weights(cnn, {k.removeprefix(prefix): v for k, v in converted.items()})
    report.dropped = [k.removeprefix("cnn.feature.") for k in dropped]
    return report


def is_original_layout(sd: dict[str, Tensor]) -> bool:
    """True for a state dict saved by the original ClipBERT code (``cnn.*``/``transformer.*``)."""
    return any(k.removeprefix("module.").startswith(("cnn.", "transformer.")) for k in sd)


def initialize_from(module: nn.Module, path: str | Path) -> LoadReport:
    """Finetuning init: load what fits from an original ``.pt`` or one of our checkpoints.

    Shape-filtered and non-strict, as the original's loader: a head of another width stays
    freshly initialised, and the report says so. The MLM and ITM heads of a pre-trained
    checkpoint (the released one, or one of ``task=pretrain_*``) are reported as dropped when
    the module has no such heads, as the original leaves them behind; a module with an
    auxiliary MLM head (retrieval's ``mlm_weight``) starts it from the pre-trained one.
    """
    sd = read_state_dict(path)
    dropped: list[str] = []
    if is_original_layout(sd):
        sd, dropped = convert_original_state_dict(sd)
    own = module.state_dict()
    if any(k.startswith(_AUXILIARY_MLM) for k in own):
        sd = {_auxiliary_mlm_key(k): v for k, v in sd.items()}
    unused = [k for k in sd if k.startswith(PRETRAINING_HEADS) and k not in own]
    dropped += unused
    report = load_weights(module, {k: v for k, v in sd.items() if k not in unused})
    report.dropped = dropped
    return report


_AUXILIARY_MLM = "mlm_head."
_PRETRAINED_MLM = "head.predictions."


def _auxiliary_mlm_key(key: str) -> str:
    """The pre-trained MLM head's key as the auxiliary MLM head's."""
    if key.startswith(_PRETRAINED_MLM):
        return _AUXILIARY_MLM + key.removeprefix(_PRETRAINED_MLM)
    return key
