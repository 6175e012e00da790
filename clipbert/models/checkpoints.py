"""Original ClipBERT state-dict keys -> ours (reference/clipbert-original.md section 2.5).

Converted keys are relative to a module that holds the body as ``backbone``
(``ClipBertBackbone``) and the task head as ``head`` (``MLPClassifier``).
"""

from __future__ import annotations

import re

from torch import Tensor

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
)
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
