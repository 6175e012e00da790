"""Parity with the ORIGINAL ClipBERT code, on the reference fixture (shared/fixtures/README.md)."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clipbert.models.backbone import ClipBertBackbone, build_bert
from clipbert.models.checkpoints import convert_original_state_dict, load_weights
from clipbert.models.heads import MLPClassifier
from clipbert.models.resnet import resnet50

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
BERT_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
)
# Fixture README section 7: atol scaled by the output's magnitude for feature maps.
SCALED_ATOL = ("res5_first_frame", "grid", "visual_embedding", "sequence_output")
CASES = {"qa_224_pipeline": ("qa", 10), "ret_224": ("ret", 2)}


def test_converter_renames_drops_and_casts() -> None:
    half = torch.ones(2, dtype=torch.float16)
    original = {
        "module.cnn.feature.backbone.stem.conv1.weight": half,
        "cnn.feature.backbone.stem.conv1.norm.running_var": half,
        "cnn.feature.backbone.res2.0.shortcut.weight": half,
        "cnn.feature.backbone.res3.0.shortcut.norm.bias": half,
        "cnn.feature.backbone.res5.2.conv3.norm.running_mean": half,
        "cnn.feature.backbone.res4.1.conv2.weight": half,
        "cnn.feature.proposal_generator.rpn_head.conv.weight": half,
        "cnn.feature.roi_heads.box_head.fc1.weight": half,
        "cnn.grid_encoder.0.weight": half,
        "transformer.bert.embeddings.word_embeddings.weight": half,
        "transformer.bert.encoder.layer.1.output.LayerNorm.bias": half,
        "transformer.bert.pooler.dense.weight": half,
        "transformer.bert.visual_embeddings.position_embeddings.weight": half,
        "transformer.bert.visual_embeddings.row_position_embeddings.weight": half,
        "transformer.classifier.2.bias": half,
        "step": torch.tensor(3),
    }
    converted, dropped = convert_original_state_dict(original)
    assert set(converted) == {
        "backbone.cnn.conv1.weight",
        "backbone.cnn.bn1.running_var",
        "backbone.cnn.layer1.0.downsample.0.weight",
        "backbone.cnn.layer2.0.downsample.1.bias",
        "backbone.cnn.layer4.2.bn3.running_mean",
        "backbone.cnn.layer3.1.conv2.weight",
        "backbone.grid_encoder.0.weight",
        "backbone.bert.embeddings.word_embeddings.weight",
        "backbone.bert.encoder.layer.1.output.LayerNorm.bias",
        "backbone.bert.pooler.dense.weight",
        "backbone.visual_embeddings.row_position_embeddings.weight",
        "head.classifier.2.bias",
    }
    assert all(v.dtype == torch.float32 for v in converted.values())
    assert dropped == [
        "cnn.feature.proposal_generator.rpn_head.conv.weight",
        "cnn.feature.roi_heads.box_head.fc1.weight",
        "transformer.bert.visual_embeddings.position_embeddings.weight",
        "step",
    ]


def _fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"parity fixture not found at {FIXTURES}")
    return FIXTURES


def _load(name: str) -> dict:
    return torch.load(_fixtures() / name, weights_only=True)


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((_fixtures() / "meta.json").read_text())


class TaskModel(nn.Module):
    """Stand-in for a task module: the converter's keys are relative to backbone + head."""

    def __init__(self, bert_config: dict, num_labels: int) -> None:
        super().__init__()
        self.backbone = ClipBertBackbone(resnet50(), build_bert(bert_config))
        self.head = MLPClassifier(bert_config["hidden_size"], num_labels)


def _original_state_dict(task: str) -> dict[str, Tensor]:
    state = _load("state_dict_qa_fp16.pt")
    if task == "qa":
        return state
    body = {k: v for k, v in state.items() if not k.startswith("transformer.classifier.")}
    return body | _load("state_dict_heads_ret_fp16.pt")[task]


def _model(meta: dict, task: str, num_labels: int) -> TaskModel:
    model = TaskModel({k: meta["bert_config"][k] for k in BERT_KEYS}, num_labels)
    converted, _ = convert_original_state_dict(_original_state_dict(task))
    report = load_weights(model, converted, strict=True)
    assert len(report.loaded) == len(converted)
    return model.eval()


def test_every_used_original_key_maps_onto_ours(meta: dict) -> None:
    full = meta["full_state_dict_keys"]
    converted, dropped = convert_original_state_dict(
        {k: torch.zeros(v["shape"]) for k, v in full.items()}
    )
    assert all(
        k.startswith(("cnn.feature.proposal_generator.", "cnn.feature.roi_heads."))
        or k == "transformer.bert.visual_embeddings.position_embeddings.weight"
        for k in dropped
    )
    model = TaskModel({k: meta["bert_config"][k] for k in BERT_KEYS}, 10)
    ours = model.state_dict()
    assert set(converted) == set(ours)
    assert all(ours[k].shape == v.shape for k, v in converted.items())
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    for key, info in full.items():
        if info["kind"] == "parameter" and key not in dropped:
            (name,) = convert_original_state_dict({key: torch.zeros(1)})[0]
            assert trainable[name] == info["requires_grad"], key


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_match_the_original(meta: dict, case: str) -> None:
    task, num_labels = CASES[case]
    model = _model(meta, task, num_labels)
    inputs, reference = _load("inputs.pt"), _load("outputs.pt")[case]
    texts = inputs[case]
    videos = inputs["qa_224_pipeline"]["frames_resized_padded"]  # ret_224 reuses these frames
    per_video = torch.tensor(texts["n_examples_list"])
    visual_index = torch.repeat_interleave(torch.arange(len(per_video)), per_video)

    captured: dict[str, Tensor] = {}
    body = model.backbone
    for name, module in [("cnn", body.cnn), ("grid_encoder", body.grid_encoder)]:
        module.register_forward_hook(lambda _m, _i, out, name=name: captured.update({name: out}))
    args = (videos[:, None], texts["text_input_ids"], texts["text_input_mask"], visual_index)
    with torch.no_grad():
        sequence = body.encode(*args)
        pooled = body(*args)[:, 0]  # one clip
        logits = model.head(pooled)
        num_videos, num_frames = videos.shape[:2]
        grid = captured["grid_encoder"].permute(0, 2, 3, 1).unflatten(0, (num_videos, num_frames))
        ours = {
            "res5_first_frame": captured["cnn"].unflatten(0, (num_videos, num_frames))[:, 0],
            "grid": grid,
            "text_embedding": body.bert.embeddings(input_ids=texts["text_input_ids"]),
            "visual_embedding": body.visual_embeddings(grid[visual_index]),
            "sequence_output": sequence[:, 0],
            "pooled_output": pooled,
            "logits": logits,
            "loss": F.cross_entropy(logits, texts["labels"], reduction="none"),
        }
    length = texts["text_input_ids"].shape[1]
    assert sequence.shape[2] == length + ours["visual_embedding"].shape[1]
    for name, expected in reference.items():
        scale = max(1.0, expected.abs().max().item()) if name in SCALED_ATOL else 1.0
        torch.testing.assert_close(
            ours[name], expected, atol=1e-4 * scale, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}"
        )
