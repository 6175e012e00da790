"""Loading the original's pre-trained parts: a bert-base folder, the grid-feat R50 .pth,
and a full-size original ClipBERT state dict."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForPreTraining

from clipbert.models.backbone import ClipBertBackbone, build_backbone, build_bert
from clipbert.models.checkpoints import (
    PRETRAINING_HEADS,
    convert_original_state_dict,
    initialize_from,
    load_grid_feat,
    load_weights,
    to_original_state_dict,
    with_unread_original_keys,
)
from clipbert.models.heads import MLPClassifier, PretrainingHeads
from clipbert.models.resnet import ResNet, resnet50
from clipbert.tasks.pretraining import PretrainTask

TINY_BERT = {
    "vocab_size": 60,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
}
TINY_CNN = {"layers": [1, 1, 1, 1], "stem_width": 8, "width": 4}


def _old_style_bert_folder(folder: Path, safetensors: bool) -> BertForPreTraining:
    """A BertForPreTraining saved as old checkpoints are: LayerNorm gamma/beta, ``bert.`` keys."""
    torch.manual_seed(3)
    model = BertForPreTraining(BertConfig(**TINY_BERT))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name:
                param.add_(torch.randn_like(param) * 0.1)  # so a skipped LayerNorm shows
    folder.mkdir()
    model.config.to_json_file(folder / "config.json")
    sd = {}
    for key, value in model.state_dict().items():
        if "LayerNorm" in key:
            key = key.replace(".weight", ".gamma").replace(".bias", ".beta")
        sd[key] = value.clone()
    if safetensors:
        save_file(sd, str(folder / "model.safetensors"))
    else:
        torch.save(sd, folder / "pytorch_model.bin")
    return model


@pytest.mark.parametrize("safetensors", [False, True])
def test_bert_folder_loads_with_gamma_beta_renamed(
    tmp_path: Path, safetensors: bool, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "bert-base-uncased"
    reference = _old_style_bert_folder(folder, safetensors)
    with caplog.at_level(logging.INFO, logger="clipbert.models.backbone"):
        bert = build_bert({"hidden_size": 999}, pretrained_dir=str(folder), vocab_size=60)
    assert bert.config.hidden_size == 16  # the folder's config.json wins
    expected = reference.bert.state_dict()
    for key, value in bert.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert not bert.embeddings.LayerNorm.weight.eq(1).all()  # gamma really loaded
    assert "missing 0, unexpected 0, shape-mismatched 0" in caplog.text
    with pytest.raises(ValueError, match="vocab_size=7"):
        build_bert(pretrained_dir=str(folder), vocab_size=7)


def test_bert_weights_file_without_config_uses_the_listed_values(tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    reference = _old_style_bert_folder(folder, safetensors=False)
    bert = build_bert(TINY_BERT, pretrained_dir=str(folder / "pytorch_model.bin"))
    assert torch.equal(bert.pooler.dense.weight, reference.bert.pooler.dense.weight)
    with pytest.raises(FileNotFoundError, match="none of model.safetensors"):
        build_bert(TINY_BERT, pretrained_dir=str(tmp_path))


def _grid_feat_file(path: Path, cnn: ResNet) -> None:
    """A detectron2 checkpoint as grid-feats ships it: keys relative to ``cnn.feature``."""
    original = to_original_state_dict({f"backbone.cnn.{k}": v for k, v in cnn.state_dict().items()})
    model = {k.removeprefix("cnn.feature."): v for k, v in original.items()}
    model["proposal_generator.rpn_head.conv.weight"] = torch.zeros(4, 4, 3, 3)
    model["roi_heads.box_head.fc1.weight"] = torch.zeros(4, 4)
    torch.save({"model": model, "iteration": 90000}, path)


def test_grid_feat_pth_loads_into_the_cnn(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ResNet(**TINY_CNN)
    for buffer in source.buffers():
        buffer.uniform_(0.5, 1.5)
    _grid_feat_file(tmp_path / "grid_feat_R-50.pth", source)
    target = ResNet(**TINY_CNN)
    report = load_grid_feat(target, tmp_path / "grid_feat_R-50.pth")
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    assert sorted(report.dropped) == [
        "proposal_generator.rpn_head.conv.weight",
        "roi_heads.box_head.fc1.weight",
    ]
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    backbone = build_backbone(
        TINY_CNN, TINY_BERT, None, cnn_weights=str(tmp_path / "grid_feat_R-50.pth")
    )
    assert torch.equal(backbone.cnn.conv1.weight, source.conv1.weight)


def test_our_keys_go_back_to_the_original_names() -> None:
    torch.manual_seed(0)
    backbone = ClipBertBackbone(ResNet(**TINY_CNN), build_bert(TINY_BERT), image_size=None)
    model = torch.nn.Module()
    model.backbone, model.head = backbone, MLPClassifier(16, 3)
    ours = model.state_dict()
    original = to_original_state_dict(ours)
    assert "cnn.feature.backbone.res2.0.shortcut.norm.running_var" in original
    assert "transformer.classifier.2.weight" in original
    back, dropped = convert_original_state_dict(original)
    assert dropped == [] and back.keys() == ours.keys()


def _full_size_original_state_dict() -> dict[str, torch.Tensor]:
    """A bert-base ClipBERT for MSRVTT-QA (1500 labels) in the original's layout, detector
    heads included (only names and shapes matter)."""
    torch.manual_seed(0)
    bert = build_bert({"vocab_size": 30522})
    model = torch.nn.Module()
    model.backbone = ClipBertBackbone(resnet50(), bert, image_size=None)
    model.head = MLPClassifier(768, 1500)
    # the detector heads and the 1-D visual position table a real original checkpoint carries
    sd = with_unread_original_keys(to_original_state_dict(model.state_dict()))
    return {"module." + k: v.half() for k, v in sd.items()}  # as a Horovod-era fp16 save


def test_full_size_original_state_dict_loads_with_only_the_documented_drops() -> None:
    sd = _full_size_original_state_dict()
    assert len(sd) == 495
    converted, dropped = convert_original_state_dict(sd)
    assert len(dropped) == 21  # 20 detector-head tensors + the unused visual position table
    assert all(
        ".proposal_generator." in k or ".roi_heads." in k or "visual_embeddings.position_" in k
        for k in dropped
    )
    model = torch.nn.Module()
    bert = build_bert({"vocab_size": 30522})
    model.backbone = ClipBertBackbone(resnet50(), bert, image_size=None)
    model.head = MLPClassifier(768, 1500)
    report = load_weights(model, converted, strict=True)
    assert len(report.loaded) == 474 and report.unexpected == report.missing == []
    assert model.head.classifier[2].weight.dtype == torch.float32


def _pretraining_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.backbone = ClipBertBackbone(ResNet(**TINY_CNN), build_bert(TINY_BERT), image_size=None)
    model.head = PretrainingHeads(
        model.backbone.bert.config, model.backbone.bert.embeddings.word_embeddings
    )
    return model


def test_pretraining_heads_use_the_original_names_and_tie_the_decoder() -> None:
    model = _pretraining_model()
    original = to_original_state_dict(model.state_dict())
    assert {k for k in original if k.startswith("transformer.cls.")} == {
        "transformer.cls.predictions.bias",
        "transformer.cls.predictions.transform.dense.weight",
        "transformer.cls.predictions.transform.dense.bias",
        "transformer.cls.predictions.transform.LayerNorm.weight",
        "transformer.cls.predictions.transform.LayerNorm.bias",
        "transformer.cls.predictions.decoder.weight",
        "transformer.cls.predictions.decoder.bias",
        "transformer.cls.seq_relationship.weight",
        "transformer.cls.seq_relationship.bias",
    }
    # The release stores the tied decoder as a separate, equal copy: loading keeps the tie.
    original = {k: v.clone() + 1 for k, v in original.items()}
    target = _pretraining_model()
    converted, _ = convert_original_state_dict(original)
    load_weights(target, converted, strict=True)
    word = target.backbone.bert.embeddings.word_embeddings.weight
    assert target.head.predictions.decoder.weight is word
    assert torch.equal(word, original["transformer.bert.embeddings.word_embeddings.weight"])
    mlm, itm = target.head(torch.randn(2, 5, 16), torch.randn(2, 16))
    assert mlm.shape == (2, 5, 60) and itm.shape == (2, 2)


def test_finetuning_from_the_pretrained_release_drops_its_heads(tmp_path: Path) -> None:
    original = to_original_state_dict(_pretraining_model().state_dict())
    path = tmp_path / "clipbert_image_text_pretrained.pt"
    torch.save(original, path)
    qa = torch.nn.Module()
    qa.backbone = ClipBertBackbone(ResNet(**TINY_CNN), build_bert(TINY_BERT), image_size=None)
    qa.head = MLPClassifier(16, 7)
    report = initialize_from(qa, path)
    assert report.unexpected == [] and report.mismatched == []
    assert sorted(report.missing) == [
        f"head.classifier.{i}.{p}" for i in (0, 2) for p in ("bias", "weight")
    ]
    assert len(report.dropped) == 9 and all(k.startswith(PRETRAINING_HEADS) for k in report.dropped)
    assert torch.equal(
        qa.backbone.bert.pooler.dense.weight, original["transformer.bert.pooler.dense.weight"]
    )


def test_pretraining_starts_its_heads_from_berts_own(tmp_path: Path) -> None:
    """As the original: the MLM head from BERT's, the ITM head from its next-sentence head;
    the decoder stays the word embeddings. A rebuilt run (no BERT folder) loads nothing."""
    folder = tmp_path / "bert-base-uncased"
    reference = _old_style_bert_folder(folder, safetensors=True)
    backbone = build_backbone(
        {"layers": [1, 1, 1, 1], "stem_width": 8, "width": 4},
        {"pretrained_dir": str(folder)},
        image_size=64,
    )
    task = PretrainTask(backbone, optimizer=torch.optim.AdamW, cnn_lr=1e-3, cnn_weight_decay=0.0)
    expected = reference.cls.state_dict()
    for key, value in task.head.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert task.head.predictions.decoder.weight is backbone.bert.embeddings.word_embeddings.weight
    rebuilt = build_backbone(
        {"layers": [1, 1, 1, 1], "stem_width": 8, "width": 4}, TINY_BERT, image_size=64
    )
    fresh = PretrainTask(rebuilt, optimizer=torch.optim.AdamW, cnn_lr=1e-3, cnn_weight_decay=0.0)
    assert not torch.equal(
        fresh.head.seq_relationship.weight, reference.cls.seq_relationship.weight
    )
