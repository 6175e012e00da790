"""Parity with the ORIGINAL ClipBERT code, on the reference fixture (shared/fixtures/README.md)."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clipbert import load_original
from clipbert.data.batches import QABatch, batch_frames
from clipbert.models.backbone import ClipBertBackbone, build_bert
from clipbert.models.checkpoints import convert_original_state_dict, load_weights
from clipbert.models.heads import MLPClassifier
from clipbert.models.original import OriginalClipBert, original_loss
from clipbert.models.resnet import resnet50
from clipbert.tasks.video_qa import VideoQATask
from tests.helpers import FIXTURES, load_fixture

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]
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
CASES = {"qa_224_pipeline": ("qa", "qa"), "ret_224": ("ret", "retrieval")}


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


@pytest.fixture
def device(request: pytest.FixtureRequest):
    """The device under test; on CUDA, true fp32 (TF32 off) as the fixture's tolerances assume."""
    name = request.param
    if name != "cuda":
        yield torch.device(name)
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield torch.device(name)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"parity fixture not found at {FIXTURES}")
    return FIXTURES


def _load(name: str) -> dict:
    return load_fixture(name)


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((_fixtures() / "meta.json").read_text())


@pytest.fixture(scope="module")
def inputs() -> dict:
    return _load("inputs.pt")


@pytest.fixture(scope="module")
def outputs() -> dict:
    return _load("outputs.pt")


class TaskModel(nn.Module):
    """Stand-in for a task module: the converter's keys are relative to backbone + head."""

    def __init__(self, bert_config: dict, num_labels: int) -> None:
        super().__init__()
        self.backbone = ClipBertBackbone(resnet50(), build_bert(bert_config), image_size=None)
        self.head = MLPClassifier(bert_config["hidden_size"], num_labels)


def _original_state_dict(task: str) -> dict[str, Tensor]:
    state = _load("state_dict_qa_fp16.pt")
    if task == "qa":
        return state
    body = {k: v for k, v in state.items() if not k.startswith("transformer.classifier.")}
    return body | _load("state_dict_heads_ret_fp16.pt")[task]


def _visual_inputs(inputs: dict, meta: dict) -> Tensor:
    """The original's model input: resized, padded frames minus the RGB mean (no /255)."""
    frames = inputs["qa_224_pipeline"]["frames_resized_padded"]  # ret_224 reuses these frames
    return frames - torch.tensor(meta["pixel_mean_rgb"]).view(1, 1, 3, 1, 1)


def _check(name: str, ours: Tensor, expected: Tensor) -> None:
    scale = max(1.0, expected.abs().max().item()) if name in SCALED_ATOL else 1.0
    torch.testing.assert_close(
        ours, expected, atol=1e-4 * scale, rtol=1e-4, msg=lambda m: f"{name}: {m}"
    )


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


@pytest.mark.parametrize("device", DEVICES, indirect=True)
@pytest.mark.parametrize("case", list(CASES))
def test_outputs_match_the_original(
    meta: dict, inputs: dict, outputs: dict, case: str, device: torch.device
) -> None:
    task, head = CASES[case]
    model = load_original(_original_state_dict(task), head=head).to(device)
    texts = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in inputs[case].items()}
    reference = outputs[case]
    visual = _visual_inputs(inputs, meta).to(device)
    per_video = torch.tensor(texts["n_examples_list"], device=device)
    visual_index = torch.repeat_interleave(torch.arange(len(per_video), device=device), per_video)

    captured: dict[str, Tensor] = {}
    body = model.backbone
    for name, module in [("cnn", body.cnn), ("grid_encoder", body.grid_encoder)]:
        module.register_forward_hook(lambda _m, _i, out, name=name: captured.update({name: out}))
    ids, mask = texts["text_input_ids"], texts["text_input_mask"]
    with torch.no_grad():
        sequence = body.encode(visual[:, None], ids, mask, visual_index)
        logits = model(visual, ids, mask, texts["n_examples_list"])
        num_videos, num_frames = visual.shape[:2]
        grid = captured["grid_encoder"].permute(0, 2, 3, 1).unflatten(0, (num_videos, num_frames))
        ours = {
            "res5_first_frame": captured["cnn"].unflatten(0, (num_videos, num_frames))[:, 0],
            "grid": grid,
            "text_embedding": body.bert.embeddings(input_ids=ids),
            "visual_embedding": body.visual_embeddings(grid[visual_index]),
            "sequence_output": sequence[:, 0],
            "pooled_output": body.bert.pooler(sequence[:, 0]),
            "logits": logits,
            "loss": original_loss(logits, texts["labels"]),
        }
    assert sequence.shape[2] == ids.shape[1] + ours["visual_embedding"].shape[1]
    for name, expected in reference.items():
        _check(name, ours[name].cpu(), expected)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_raw_frames_through_our_input_path_match(
    inputs: dict, outputs: dict, device: torch.device
) -> None:
    """Raw uint8 frames -> our loader batching -> the model's input transform on the device."""
    case = inputs["qa_224_pipeline"]
    # what the loader ships: uint8 clips at the videos' own sizes (ragged when they differ)
    frames = batch_frames([video[None].to(device) for video in case["raw_frames"]])
    sd, _ = convert_original_state_dict(_original_state_dict("qa"))
    reference = load_original(_original_state_dict("qa"))
    module = VideoQATask(
        ClipBertBackbone(
            resnet50(), build_bert(_bert_config(reference)), image_size=case["max_img_size"]
        ),
        answer_vocabulary=[f"answer {i}" for i in range(10)],
        optimizer=torch.optim.AdamW,
        cnn_lr=1e-4,
        cnn_weight_decay=1e-3,
    )
    load_weights(module, sd, strict=True)
    module.eval().to(device)
    batch = QABatch(
        frames=frames,
        input_ids=case["text_input_ids"].to(device),
        attention_mask=case["text_input_mask"].to(device),
        visual_index=torch.arange(2, device=device),
        labels=case["labels"].to(device),
    )
    expected = outputs["qa_224_pipeline"]
    with torch.no_grad():
        _check("logits", module(batch).cpu(), expected["logits"])
        # Golden loss: our training step's loss is the mean of the original's per-example CE.
        _check("loss", module.training_step(batch, 0).cpu(), expected["loss"].mean())


def _bert_config(model: OriginalClipBert) -> dict:
    return {k: getattr(model.backbone.bert.config, k) for k in BERT_KEYS}


def test_multiple_choice_rows_are_grouped_per_question(meta: dict, inputs: dict) -> None:
    """MC: one score per ``question + option`` row; video 0's 5 rows first, then video 1's."""
    torch.manual_seed(0)
    state = _original_state_dict("qa")
    hidden = state["transformer.classifier.0.weight"].shape[0]
    mc_head = {"transformer.classifier.2.weight": torch.randn(1, hidden) * 0.1}
    mc_head["transformer.classifier.2.bias"] = torch.zeros(1)
    mc = load_original(state | mc_head, head="mc", num_labels=5)
    visual = _visual_inputs(inputs, meta)
    ids = inputs["ret_224"]["text_input_ids"].repeat(3, 1)[:10]
    mask = inputs["ret_224"]["text_input_mask"].repeat(3, 1)[:10]
    with torch.no_grad():
        logits = mc(visual, ids, mask, [5, 5])
        per_question = mc(visual, ids, mask, [1, 1])  # counted per question: same thing
        rows = torch.stack(
            [
                mc(visual[v : v + 1], ids[5 * v : 5 * v + 5], mask[5 * v : 5 * v + 5], [5])
                for v in (0, 1)
            ]
        )
    assert logits.shape == (2, 5)
    torch.testing.assert_close(per_question, logits)
    torch.testing.assert_close(rows.squeeze(1), logits, atol=1e-5, rtol=1e-5)
    loss = original_loss(logits, torch.tensor([1, 4]))
    torch.testing.assert_close(
        loss, F.cross_entropy(logits, torch.tensor([1, 4]), reduction="none")
    )


@pytest.mark.parametrize("score_agg", ["mean", "max", "lse"])
def test_multi_clip_aggregation(meta: dict, inputs: dict, score_agg: str) -> None:
    """Clips run independently; logits combine over clips; lse loss is the original formula."""
    model = load_original(_original_state_dict("qa"))
    visual = _visual_inputs(inputs, meta)
    clips = torch.cat([visual, visual.flip(-1)], dim=1)  # (B, 2 clips x 2 frames, 3, S, S)
    case = inputs["qa_224_pipeline"]
    ids, mask, labels = case["text_input_ids"], case["text_input_mask"], case["labels"]
    with torch.no_grad():
        per_clip = torch.stack([model(visual, ids, mask), model(visual.flip(-1), ids, mask)])
        stacked = model.clip_logits(clips, ids, mask, num_clips=2)
        six_d = model.clip_logits(clips.unflatten(1, (2, 2)), ids, mask)
        aggregated = model(clips, ids, mask, num_clips=2, score_agg=score_agg)
    torch.testing.assert_close(stacked, per_clip, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(six_d, stacked)
    expected = {
        "mean": per_clip.mean(0),
        "max": per_clip.max(0).values,
        "lse": per_clip.logsumexp(0),
    }[score_agg]
    torch.testing.assert_close(aggregated, expected, atol=1e-5, rtol=1e-5)
    if score_agg == "lse":
        gold = per_clip[:, torch.arange(2), labels]  # (clips, B)
        formula = per_clip.permute(1, 0, 2).flatten(1).logsumexp(1) - gold.logsumexp(0)
        torch.testing.assert_close(original_loss(aggregated, labels), formula)


def test_load_original_refuses_what_it_cannot_run() -> None:
    state = _original_state_dict("qa")
    with pytest.raises(ValueError, match="num_labels=7 but the checkpoint's classifier has 10"):
        load_original(state, head="qa", num_labels=7)
    with pytest.raises(ValueError, match="one option per row"):
        load_original(state, head="mc")
    pretrained = {k: v for k, v in state.items() if not k.startswith("transformer.classifier.")}
    with pytest.raises(ValueError, match="model.init_from"):
        load_original(pretrained)
    with pytest.raises(ValueError, match="strict load failed.*missing 1"):
        load_original({k: v for k, v in state.items() if "pooler.dense.bias" not in k})
    model = load_original(state)
    visual = torch.zeros(2, 2, 3, 64, 64)
    ids = torch.ones(3, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="sums to 2 but there are 3 text rows"):
        model(visual, ids, torch.ones_like(ids), [1, 1])
    with pytest.raises(ValueError, match="do not split into 3 clips"):
        model(visual, ids[:2], torch.ones_like(ids[:2]), num_clips=3)
