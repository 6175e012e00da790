"""The original ClipBERT's calling convention over our modules, for parity checks and migration.

``load_original`` turns an original checkpoint into an eval-mode model that takes the original's
batch (``visual_inputs`` already mean-subtracted, ``n_examples_list`` pairing texts with
videos) and returns its logits, so users can compare outputs with the original code directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clipbert.models.backbone import ClipBertBackbone, build_bert
from clipbert.models.checkpoints import (
    PRETRAINING_HEADS,
    convert_original_state_dict,
    is_original_layout,
    load_weights,
    read_state_dict,
)
from clipbert.models.heads import (
    IGNORE_INDEX,
    MLPClassifier,
    PretrainingHeads,
    aggregate_clip_logits,
    group_options,
)
from clipbert.models.resnet import resnet50

HEADS = ("qa", "mc", "retrieval", "pretrain")
LOSS_TYPES = ("ce", "bce")
BERT_HEAD_DIM = 64  # every released BERT size (base, large, the fixture's) uses 64 per head
_BERT = "backbone.bert."


def infer_bert_config(sd: dict[str, Tensor], num_attention_heads: int | None = None) -> dict:
    """BertConfig values read off a converted state dict's tensor shapes.

    The head count is the one size the weights do not show; without ``num_attention_heads`` it
    is ``hidden_size / 64``. Everything else not shown by shapes is BERT-base's
    (``src/configs/base_model.json`` in the original).
    """
    try:
        vocab_size, hidden_size = sd[_BERT + "embeddings.word_embeddings.weight"].shape
        max_positions = sd[_BERT + "embeddings.position_embeddings.weight"].shape[0]
        type_vocab_size = sd[_BERT + "embeddings.token_type_embeddings.weight"].shape[0]
        intermediate_size = sd[_BERT + "encoder.layer.0.intermediate.dense.weight"].shape[0]
    except KeyError as err:
        raise ValueError(f"not a ClipBERT state dict: no {err.args[0]}") from None
    layer_prefix = _BERT + "encoder.layer."
    num_layers = 1 + max(
        int(k.removeprefix(layer_prefix).split(".")[0]) for k in sd if k.startswith(layer_prefix)
    )
    if num_attention_heads is None:
        if hidden_size % BERT_HEAD_DIM:
            raise ValueError(f"hidden size {hidden_size}: pass num_attention_heads explicitly")
        num_attention_heads = hidden_size // BERT_HEAD_DIM
    return {
        "vocab_size": int(vocab_size),
        "hidden_size": int(hidden_size),
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_attention_heads,
        "intermediate_size": int(intermediate_size),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": int(max_positions),
        "type_vocab_size": int(type_vocab_size),
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }


class OriginalClipBert(nn.Module):
    """Our backbone and head behind the original ``ClipBert``'s inputs and outputs.

    ``head`` is ``qa`` (open-ended video QA, VQA: one logit per answer), ``mc`` (multiple
    choice: one score per ``question + " " + option`` row, ``num_options`` rows per question)
    or ``retrieval`` (match / no match).
    """

    def __init__(
        self, backbone: ClipBertBackbone, head: MLPClassifier, head_type: str, num_options: int = 5
    ) -> None:
        super().__init__()
        if head_type not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got '{head_type}'")
        self.backbone = backbone
        self.head = head
        self.head_type = head_type
        self.num_options = num_options

    def clip_logits(
        self,
        visual_inputs: Tensor,
        text_input_ids: Tensor,
        text_input_mask: Tensor,
        n_examples_list: Sequence[int] | None = None,
        num_clips: int = 1,
    ) -> Tensor:
        """Per-clip logits stacked clip-first, (num_clips, rows, C), as the original's loop does.

        visual_inputs (B, num_clips * T, 3, H, W), clips one after another along the time axis
        as the original's loader gives them, or (B, num_clips, T, 3, H, W): RGB, 0-255 minus
        the pixel mean (the original's ``ImageNorm``). For ``mc`` the rows are questions and
        C the options.
        """
        frames = _split_clips(visual_inputs, num_clips)
        counts = self._examples_per_video(n_examples_list, frames.shape[0], text_input_ids.shape[0])
        visual_index = _visual_index(counts, frames.shape[0], text_input_ids.shape[0], frames)
        pooled = self.backbone(frames, text_input_ids, text_input_mask, visual_index)  # (E, N, H)
        logits = self.head(pooled)  # (E, N, C)
        if self.head_type == "mc":
            logits = group_options(logits, self.num_options)
        return logits.transpose(0, 1)

    def forward(
        self,
        visual_inputs: Tensor,
        text_input_ids: Tensor,
        text_input_mask: Tensor,
        n_examples_list: Sequence[int] | None = None,
        num_clips: int = 1,
        score_agg: str = "mean",
    ) -> Tensor:
        """Logits (rows, C), aggregated over clips by ``score_agg`` (mean, max or lse)."""
        per_clip = self.clip_logits(
            visual_inputs, text_input_ids, text_input_mask, n_examples_list, num_clips
        )
        return aggregate_clip_logits(per_clip.transpose(0, 1), score_agg)

    def _examples_per_video(
        self, counts: Sequence[int] | None, num_videos: int, num_rows: int
    ) -> list[int]:
        counts = [1] * num_videos if counts is None else [int(c) for c in counts]
        if self.head_type == "mc" and sum(counts) * self.num_options == num_rows:
            # Counted per question, as the data loader gives it; the original's forward_step
            # multiplies by the number of options before the model sees it.
            counts = [c * self.num_options for c in counts]
        return counts


class OriginalClipBertPretraining(nn.Module):
    """Our backbone and pre-training heads behind the original ``ClipBertForPreTraining``'s
    inputs and outputs: MLM scores of every text position, ITM scores of the pooled output,
    and both losses unreduced, as the original's training loop receives them."""

    def __init__(self, backbone: ClipBertBackbone, heads: PretrainingHeads) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = heads

    def forward(
        self,
        visual_inputs: Tensor,
        text_input_ids: Tensor,
        text_input_mask: Tensor,
        n_examples_list: Sequence[int] | None = None,
        mlm_labels: Tensor | None = None,
        itm_labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """visual_inputs (B, T, 3, H, W), mean-subtracted RGB; text row i pairs with the image
        of ``n_examples_list`` grouping (consecutive rows per image). Returns ``mlm_scores``
        (N, L, vocab), ``itm_scores`` (N, 2) and, given the labels, ``mlm_loss`` (N * L,) with
        0 where the label is -100, and ``itm_loss`` (N,)."""
        frames = _split_clips(visual_inputs, 1)
        counts = [1] * frames.shape[0] if n_examples_list is None else list(n_examples_list)
        visual_index = _visual_index(counts, frames.shape[0], text_input_ids.shape[0], frames)
        hidden = self.backbone.encode(frames, text_input_ids, text_input_mask, visual_index)[:, 0]
        mlm_scores, itm_scores = self.head(
            hidden[:, : text_input_ids.shape[1]], self.backbone.pool(hidden)
        )
        outputs = {"mlm_scores": mlm_scores, "itm_scores": itm_scores}
        if mlm_labels is not None:
            outputs["mlm_loss"] = F.cross_entropy(
                mlm_scores.flatten(0, 1),
                mlm_labels.flatten(),
                ignore_index=IGNORE_INDEX,
                reduction="none",
            )
        if itm_labels is not None:
            outputs["itm_loss"] = F.cross_entropy(itm_scores, itm_labels, reduction="none")
        return outputs


def _visual_index(counts: Sequence[int], num_videos: int, num_rows: int, frames: Tensor) -> Tensor:
    """Each text row's video from ``n_examples_list`` (consecutive rows per video), on the
    frames' device; counts that do not pair the rows with the videos are an error."""
    if len(counts) != num_videos:
        raise ValueError(f"n_examples_list has {len(counts)} entries for {num_videos} videos")
    if sum(counts) != num_rows:
        raise ValueError(
            f"n_examples_list sums to {sum(counts)} but there are {num_rows} text rows"
        )
    return torch.repeat_interleave(
        torch.arange(len(counts), device=frames.device),
        torch.tensor([int(c) for c in counts], device=frames.device),
    )


def original_loss(logits: Tensor, labels: Tensor, loss_type: str = "ce") -> Tensor:
    """The original's per-example training loss (``reduction='none'``) on aggregated logits.

    ``ce``: cross-entropy; on lse-aggregated logits this is the original's lse loss. ``bce``
    (VQA): BCE with soft targets, summed over labels.
    """
    if loss_type == "ce":
        return F.cross_entropy(logits, labels, reduction="none")
    if loss_type == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(dim=-1)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got '{loss_type}'")


def load_original(
    path_or_state_dict: str | Path | dict[str, Tensor],
    head: str = "qa",
    num_labels: int | None = None,
    num_attention_heads: int | None = None,
) -> OriginalClipBert | OriginalClipBertPretraining:
    """An eval-mode model from an original ClipBERT checkpoint, loaded strictly.

    ``num_labels`` is the classifier width for ``qa`` and ``retrieval`` (read from the
    checkpoint when None; checked when given) and the number of options for ``mc`` (default 5).
    ``pretrain`` takes the pre-training checkpoint (MLM and ITM heads, ``transformer.cls.*``).
    Raises if a fine-tuning head is asked of a checkpoint without one (e.g. the pre-trained
    release: finetune it with ``model.init_from`` instead) or if any used key is missing or
    has another shape.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got '{head}'")
    raw = (
        path_or_state_dict
        if isinstance(path_or_state_dict, dict)
        else read_state_dict(path_or_state_dict)
    )
    if not is_original_layout(raw):
        raise ValueError("not an original ClipBERT state dict (no 'cnn.*'/'transformer.*' keys)")
    sd, _ = convert_original_state_dict(raw)
    if head == "pretrain":
        return _load_pretraining(sd, num_attention_heads)
    sd = {k: v for k, v in sd.items() if not k.startswith(PRETRAINING_HEADS)}
    width = _head_width(sd)
    num_options = 5
    if head == "mc":
        num_options = num_labels or num_options
        if width != 1:
            raise ValueError(
                f"a multiple-choice head scores one option per row; this one has {width} outputs"
            )
    elif num_labels is not None and num_labels != width:
        raise ValueError(
            f"num_labels={num_labels} but the checkpoint's classifier has {width} outputs"
        )
    bert_config = infer_bert_config(sd, num_attention_heads)
    model = OriginalClipBert(
        _original_backbone(sd, bert_config),
        MLPClassifier(bert_config["hidden_size"], width),
        head,
        num_options,
    )
    load_weights(model, sd, strict=True)
    return model.eval()


def _original_backbone(sd: dict[str, Tensor], bert_config: dict) -> ClipBertBackbone:
    """The original's R50 and a BERT of the checkpoint's size; original inputs arrive
    mean-subtracted, so the model itself normalises nothing."""
    grid_size = sd["backbone.visual_embeddings.row_position_embeddings.weight"].shape[0]
    return ClipBertBackbone(
        resnet50(),
        build_bert(bert_config),
        image_size=None,
        max_grid_size=grid_size,
        pixel_mean=(0.0, 0.0, 0.0),
    )


def _load_pretraining(
    sd: dict[str, Tensor], num_attention_heads: int | None
) -> OriginalClipBertPretraining:
    if not any(k.startswith(PRETRAINING_HEADS) for k in sd):
        raise ValueError("the checkpoint has no pre-training heads (transformer.cls.*)")
    bert_config = infer_bert_config(sd, num_attention_heads)
    backbone = _original_backbone(sd, bert_config)
    heads = PretrainingHeads(backbone.bert.config, backbone.bert.embeddings.word_embeddings)
    model = OriginalClipBertPretraining(backbone, heads)
    load_weights(model, sd, strict=True)
    return model.eval()


def _head_width(sd: dict[str, Tensor]) -> int:
    weight = sd.get("head.classifier.2.weight")
    if weight is None:
        raise ValueError(
            "the checkpoint has no fine-tuned classifier (transformer.classifier.*); a pre-trained "
            "checkpoint is a starting point: finetune it with model.init_from=<path>"
        )
    return int(weight.shape[0])


def _split_clips(visual_inputs: Tensor, num_clips: int) -> Tensor:
    """(B, N*T, 3, H, W), the original's loader layout, or (B, N, T, 3, H, W) -> the latter."""
    if visual_inputs.dim() == 6:
        if num_clips not in (1, visual_inputs.shape[1]):
            raise ValueError(f"visual_inputs hold {visual_inputs.shape[1]} clips, not {num_clips}")
        return visual_inputs
    if visual_inputs.dim() != 5:
        raise ValueError(
            f"visual_inputs must be (B, T, 3, H, W) or (B, N, T, 3, H, W), "
            f"got {tuple(visual_inputs.shape)}"
        )
    if num_clips < 1 or visual_inputs.shape[1] % num_clips:
        raise ValueError(f"{visual_inputs.shape[1]} frames do not split into {num_clips} clips")
    return visual_inputs.unflatten(1, (num_clips, -1))
