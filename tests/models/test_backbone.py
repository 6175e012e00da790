from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from transformers import BertConfig

import clipbert.models.backbone as backbone_module
from clipbert.models.backbone import ClipBertBackbone, build_backbone, build_bert
from clipbert.models.frame_input import resize_pad
from clipbert.models.heads import MLPClassifier
from clipbert.models.resnet import ResNet
from clipbert.models.visual import GridEncoder, VisualEmbeddings

HIDDEN = 32
TINY_CNN = {"layers": [1, 1, 1, 1], "stem_width": 8, "width": 4}
TINY_BERT = {
    "vocab_size": 100,
    "hidden_size": HIDDEN,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "initializer_range": 0.1,
}


def tiny_backbone(image_size: int | None = None, **kwargs) -> ClipBertBackbone:
    """A small backbone in eval mode; by default it takes frames at the size they come."""
    torch.manual_seed(0)
    return build_backbone(TINY_CNN, TINY_BERT, image_size, **kwargs).eval()


def frames(videos: int, clips: int, num_frames: int = 2, size: int = 192) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    shape = (videos, clips, num_frames, 3, size, size)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def texts(num: int, length: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(5, 100, (num, length), generator=generator)
    ids[:, 0] = 1
    mask = torch.ones(num, length, dtype=torch.long)
    mask[::2, length // 2 :] = 0  # every other text is padded
    return ids * mask, mask


@pytest.fixture(scope="module")
def backbone() -> ClipBertBackbone:
    return tiny_backbone()


def test_shapes_192(backbone: ClipBertBackbone) -> None:
    video = frames(2, 3)
    ids, mask = texts(4)
    with torch.no_grad():
        grid = backbone.encode_frames(video)
        sequence = backbone.encode(video, ids, mask, torch.tensor([0, 0, 1, 1]))
        pooled = backbone(video, ids, mask, torch.tensor([0, 0, 1, 1]))
    assert backbone.hidden_size == HIDDEN
    assert grid.shape == (2, 3, 2, 3, 3, HIDDEN)  # 192 -> res5 6x6 -> grid 3x3
    assert sequence.shape == (4, 3, 6 + 9, HIDDEN)
    assert pooled.shape == (4, 3, HIDDEN)


def test_grid_448_is_7x7(backbone: ClipBertBackbone) -> None:
    with torch.no_grad():
        grid = backbone.encode_frames(frames(1, 1, 1, 448)[0, 0])
    assert grid.shape == (1, 7, 7, HIDDEN)


def test_encode_frames_normalises_and_flips_to_bgr(backbone: ClipBertBackbone) -> None:
    video = frames(1, 1, 2, 64)[0, 0]
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    bgr = (video.float() - mean).flip(1)
    with torch.no_grad():
        expected = backbone.grid_encoder(backbone.cnn(bgr)).permute(0, 2, 3, 1)
        torch.testing.assert_close(backbone.encode_frames(video), expected)
        torch.testing.assert_close(backbone.encode_frames(video.float()), expected)


def test_grid_encoder_gets_planar_features_on_the_cpu(backbone: ClipBertBackbone) -> None:
    """Decoded frames are channels-last and so are the CNN's features; on a CPU the grid
    encoder's big kernel is cheaper to use with a planar feature map (a speed choice only)."""
    video = frames(1, 1, 2, 64)[0, 0].contiguous(memory_format=torch.channels_last)
    layouts = []
    hook = backbone.grid_encoder.register_forward_pre_hook(
        lambda module, args: layouts.append(args[0].is_contiguous())
    )
    try:
        with torch.no_grad():
            planar = backbone.encode_frames(video)
    finally:
        hook.remove()
    assert layouts == [True]
    torch.testing.assert_close(planar, backbone.encode_frames(video.contiguous()))


def test_batched_clips_equal_one_clip_at_a_time(backbone: ClipBertBackbone) -> None:
    video = frames(2, 3)
    ids, mask = texts(3)
    index = torch.tensor([0, 1, 1])
    with torch.no_grad():
        batched = backbone(video, ids, mask, index)
        per_clip = [backbone(video[:, n : n + 1], ids, mask, index) for n in range(3)]
    torch.testing.assert_close(batched, torch.cat(per_clip, dim=1), rtol=0, atol=1e-5)


def test_inference_runs_the_cnn_in_chunks_with_the_same_result() -> None:
    video = frames(2, 3, size=64)  # 12 frames
    whole = tiny_backbone(eval_frames_per_pass=12)
    chunked = tiny_backbone(eval_frames_per_pass=5)
    calls = []
    chunked.cnn.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    with torch.no_grad():
        torch.testing.assert_close(
            chunked.encode_frames(video), whole.encode_frames(video), rtol=0, atol=1e-5
        )
    assert calls == [5, 5, 2]
    calls.clear()
    chunked.train().encode_frames(video)  # training: one pass keeps one graph
    assert calls == [12]


def test_frames_are_resized_chunk_by_chunk_in_eval_and_at_once_in_training() -> None:
    """The model owns its input transform: in eval mode each chunk of frames is resized just
    before its CNN pass, and the outputs are those of frames resized beforehand; in training
    the whole batch is resized and runs in one pass."""
    video = frames(2, 3, size=96)  # 12 frames of 96x96 -> 192
    ids, mask = texts(3)
    index = torch.tensor([0, 1, 1])
    model = tiny_backbone(192, eval_frames_per_pass=5)
    as_they_come = tiny_backbone(eval_frames_per_pass=5)
    resized = []
    model.cnn.register_forward_pre_hook(lambda module, args: resized.append(args[0].shape))
    with torch.no_grad():
        expected = as_they_come(resize_pad(video, 192), ids, mask, index)
        got = model(video, ids, mask, index)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert all(len(shape) == 4 and shape[0] <= 5 and shape[-1] == 192 for shape in resized)
    assert sum(shape[0] for shape in resized) == 12
    resized.clear()
    model.train()(video, ids, mask, index)
    assert [shape[0] for shape in resized] == [12]


def test_inference_runs_bert_over_pairs_in_chunks_with_the_same_result() -> None:
    video = frames(2, 3)
    ids, mask = texts(5)
    index = torch.tensor([0, 1, 1, 0, 1])  # 5 texts x 3 clips = 15 pairs
    whole = tiny_backbone(eval_pairs_per_pass=15)
    chunked = tiny_backbone(eval_pairs_per_pass=7)  # 2 texts (6 pairs) per pass
    passes = []
    chunked.bert.encoder.register_forward_pre_hook(lambda m, args: passes.append(len(args[0])))
    with torch.no_grad():
        torch.testing.assert_close(
            chunked(video, ids, mask, index), whole(video, ids, mask, index), rtol=0, atol=1e-5
        )
    assert passes == [6, 6, 3]
    passes.clear()
    chunked.train()(video, ids, mask, index)  # training: one pass keeps one graph
    assert passes == [15]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("image_size", 16),
        ("eval_frames_per_pass", 0),
        ("eval_pairs_per_pass", 0),
        ("compile", "yes"),
    ],
)
def test_bad_backbone_options_are_refused(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        tiny_backbone(**{option: value})


def test_texts_sharing_a_video_equal_repeating_the_video(backbone: ClipBertBackbone) -> None:
    video = frames(2, 2)
    ids, mask = texts(3)
    index = torch.tensor([0, 0, 1])
    with torch.no_grad():
        shared = backbone(video, ids, mask, index)
        repeated = backbone(video[index], ids, mask)
    torch.testing.assert_close(shared, repeated, rtol=0, atol=1e-5)


def test_padded_text_tokens_are_ignored(backbone: ClipBertBackbone) -> None:
    video = frames(2, 1)
    ids, mask = texts(2)
    changed = torch.where(mask.bool(), ids, torch.full_like(ids, 42))
    with torch.no_grad():
        torch.testing.assert_close(backbone(video, ids, mask), backbone(video, changed, mask))
        unmasked = backbone(video, ids, torch.ones_like(mask))
    assert not torch.allclose(backbone(video, ids, mask), unmasked)


def test_text_count_must_match_videos_without_index(backbone: ClipBertBackbone) -> None:
    ids, mask = texts(3)
    with pytest.raises(ValueError, match="visual_index"):
        backbone(frames(2, 1, 1, 64), ids, mask)


def test_random_token_sampling_only_in_training() -> None:
    embed = VisualEmbeddings(HIDDEN, dropout=0.0, random_token_sampling=4)
    grid = torch.randn(2, 2, 3, 3, HIDDEN)
    full = embed.eval()(grid)
    torch.manual_seed(0)
    sampled = embed.train()(grid)
    torch.manual_seed(0)
    kept = torch.randperm(9)[:4].sort().values
    assert full.shape == (2, 9, HIDDEN)
    assert sampled.shape == (2, 4, HIDDEN)
    torch.testing.assert_close(sampled, full[:, kept])  # one sorted set for the whole batch
    embed.random_token_sampling = 9
    torch.testing.assert_close(embed(grid), full)


def test_backbone_trains_with_token_sampling() -> None:
    model = tiny_backbone(random_token_sampling=4).train()
    ids, mask = texts(2)
    sequence = model.encode(frames(2, 1, 1, 192), ids, mask)
    assert sequence.shape == (2, 1, 6 + 4, HIDDEN)
    model(frames(2, 1, 1, 192), ids, mask).sum().backward()
    assert model.grid_encoder[0].weight.grad is not None
    assert model.cnn.layer1[0].conv1.weight.grad is None  # frozen
    assert model.cnn.layer4[0].conv1.weight.grad is not None


def test_visual_embeddings_add_row_and_col_positions() -> None:
    embed = VisualEmbeddings(HIDDEN, dropout=0.0).eval()
    grid = torch.zeros(1, 1, 2, 3, HIDDEN)
    row = embed.row_position_embeddings.weight
    col = embed.col_position_embeddings.weight
    tokens = torch.stack([row[i] + col[j] for i in range(2) for j in range(3)])[None]
    expected = embed.LayerNorm(tokens + embed.token_type_embeddings.weight[0])
    torch.testing.assert_close(embed(grid), expected)
    assert "position_embeddings.weight" not in embed.state_dict()


def test_module_names_match_the_original(backbone: ClipBertBackbone) -> None:
    keys = set(backbone.state_dict())
    assert "grid_encoder.0.weight" in keys
    assert "grid_encoder.0.bias" not in keys
    assert {
        "visual_embeddings.row_position_embeddings.weight",
        "visual_embeddings.col_position_embeddings.weight",
        "visual_embeddings.token_type_embeddings.weight",
        "visual_embeddings.LayerNorm.weight",
        "bert.pooler.dense.weight",
    } <= keys
    assert not any(k.startswith("frame_input.") for k in keys)  # non-persistent buffers
    assert isinstance(backbone.grid_encoder, GridEncoder)
    assert [type(m) for m in backbone.grid_encoder] == [nn.Conv2d, nn.MaxPool2d, nn.ReLU]


def test_initialisation_follows_the_original(backbone: ClipBertBackbone) -> None:
    visual = backbone.visual_embeddings
    assert visual.row_position_embeddings.weight.std().item() == pytest.approx(0.1, rel=0.1)
    assert torch.equal(visual.LayerNorm.weight, torch.ones(HIDDEN))
    conv = backbone.grid_encoder[0].weight  # PyTorch default: uniform, bound 1/sqrt(fan_in)
    assert conv.abs().max().item() <= (conv[0].numel()) ** -0.5
    bert = backbone.bert.encoder.layer[0].attention.self.query
    assert bert.weight.std().item() == pytest.approx(0.1, rel=0.1)
    assert torch.equal(bert.bias, torch.zeros(HIDDEN))


def test_build_bert_from_config_and_folder(tmp_path: Path) -> None:
    eager = build_bert(TINY_BERT, vocab_size=120, attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"
    assert eager.embeddings.word_embeddings.num_embeddings == 120
    assert build_bert(TINY_BERT).config._attn_implementation == "sdpa"
    eager.save_pretrained(tmp_path)
    loaded = build_bert(pretrained_dir=str(tmp_path))
    assert loaded.config._attn_implementation == "sdpa"
    torch.testing.assert_close(loaded.state_dict(), eager.state_dict())
    with pytest.raises(ValueError, match="config.json"):
        build_bert()
    with pytest.raises(ValueError, match="vocab_size"):
        build_bert(pretrained_dir=str(tmp_path), vocab_size=7)


def test_build_backbone_takes_hydra_configs() -> None:
    cnn = OmegaConf.create(TINY_CNN)
    bert = OmegaConf.create({**TINY_BERT, "pretrained_dir": None})
    model = build_backbone(cnn, bert, 64, vocab_size=50)
    assert isinstance(model.cnn, ResNet)
    assert model.bert.config.vocab_size == 50


def test_nested_hydra_values_reach_bert_config_as_plain_dicts(monkeypatch) -> None:
    """A checkpoint's recorded BERT values hold id2label. transformers 5 with huggingface_hub 1.x
    (seen on a GPU machine: 5.17) refuses it as an omegaconf container; newer ones convert it."""
    received = {}

    def spy(**values):
        received.update(values)
        return BertConfig(**values)

    monkeypatch.setattr(backbone_module, "BertConfig", spy)
    labels = {0: "LABEL_0", 1: "LABEL_1"}
    bert = OmegaConf.create({**TINY_BERT, "id2label": labels, "pretrained_dir": None})
    config = build_backbone(OmegaConf.create(TINY_CNN), bert, 64).bert.config
    assert type(received["id2label"]) is dict and received["id2label"] == labels
    assert config.id2label == labels


def test_sdpa_and_eager_agree(backbone: ClipBertBackbone) -> None:
    eager = tiny_backbone()
    eager.bert.config._attn_implementation = "eager"
    video = frames(2, 2, 1, 64)
    ids, mask = texts(2)
    with torch.no_grad():
        torch.testing.assert_close(eager(video, ids, mask), backbone(video, ids, mask))


def test_mlp_classifier() -> None:
    head = MLPClassifier(HIDDEN, 5, initializer_range=0.1).eval()
    assert set(head.state_dict()) == {
        "classifier.0.weight",
        "classifier.0.bias",
        "classifier.2.weight",
        "classifier.2.bias",
    }
    assert head.classifier[0].out_features == 2 * HIDDEN
    assert torch.equal(head.classifier[2].bias, torch.zeros(5))
    pooled = torch.randn(3, 2, HIDDEN)
    assert head(pooled).shape == (3, 2, 5)
    torch.testing.assert_close(head(pooled), head(pooled))  # no dropout in eval


def test_compiled_parts_give_the_eager_outputs_and_gradients() -> None:
    """``model.compile=true`` compiles the CNN, grid encoder and BERT encoder in place: the
    same numbers and parameter names (so checkpoints load either way), and it really compiles."""
    no_dropout = {**TINY_BERT, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    torch.manual_seed(0)
    eager = build_backbone(TINY_CNN, no_dropout, None).train()
    torch.manual_seed(0)
    compiled = build_backbone(TINY_CNN, no_dropout, None, compile=True).train()
    assert list(compiled.state_dict()) == list(eager.state_dict())
    video = frames(2, 2, size=64)
    ids, mask = texts(2)
    compiled_frames = torch._dynamo.utils.counters["frames"]
    before = compiled_frames["ok"]
    outputs = [backbone(video, ids, mask).square().sum() for backbone in (eager, compiled)]
    assert compiled_frames["ok"] - before >= 3  # at least a graph per compiled part
    for output in outputs:
        output.backward()
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)
    for (name, expected), got in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        if expected.grad is not None:
            torch.testing.assert_close(got.grad, expected.grad, rtol=1e-3, atol=1e-4, msg=name)
