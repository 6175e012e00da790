"""Parity with the ORIGINAL ``ClipBertForPreTraining`` (shared/fixtures/pretrain/README.md):
MLM and ITM scores and losses, the MLM masking itself, and the decoder tie."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertTokenizerFast

from clipbert import load_original
from clipbert.data.collate import TokenMasker
from clipbert.models.heads import masked_token_losses, reduce_mlm_loss
from tests.helpers import load_fixture

MEAN_RGB = torch.tensor([123.675, 116.28, 103.53]).view(1, 1, 3, 1, 1)
OUTPUTS = ("mlm_scores", "itm_scores", "mlm_loss", "itm_loss")


def _load(name: str) -> dict:
    return load_fixture("pretrain", name)


@pytest.fixture(scope="module")
def original_weights() -> dict[str, torch.Tensor]:
    heads = _load("state_dict_heads_pretrain_fp16.pt")
    body = load_fixture("state_dict_qa_fp16.pt")
    body = {k: v for k, v in body.items() if not k.startswith("transformer.classifier.")}
    return {k: v.float() for k, v in {**body, **heads}.items()}


@pytest.fixture(scope="module")
def case() -> dict:
    return _load("inputs.pt")["pt_224"]


def test_pretraining_forward_matches_the_original(original_weights, case) -> None:
    model = load_original(original_weights, head="pretrain", num_attention_heads=2)
    expected = _load("outputs.pt")["pt_224"]
    with torch.no_grad():
        out = model(
            visual_inputs=case["frames_resized_padded"] - MEAN_RGB,
            text_input_ids=case["text_input_ids"],
            text_input_mask=case["text_input_mask"],
            n_examples_list=case["n_examples_list"],
            mlm_labels=case["mlm_labels"],
            itm_labels=case["itm_labels"],
        )
    for name in OUTPUTS:
        reference = expected[name]
        tolerance = 1e-4 + 1e-4 * reference.abs().max().item()
        assert out[name].shape == reference.shape, name
        assert (out[name] - reference).abs().max().item() <= tolerance, name
    # the losses are zero exactly where nothing was masked
    assert torch.equal(out["mlm_loss"] != 0, case["mlm_labels"].flatten() != -100)


def test_the_training_loss_reduces_as_the_original(original_weights, case) -> None:
    """Scoring only the masked positions gives the original's losses; ``all_positions`` is
    its ``mlm_loss.mean()`` over every position, ``masked_tokens`` the mean over the masked."""
    model = load_original(original_weights, head="pretrain", num_attention_heads=2)
    expected = _load("outputs.pt")["pt_224"]["mlm_loss"]
    frames = (case["frames_resized_padded"] - MEAN_RGB)[:, None]
    visual_index = torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        hidden = model.backbone.encode(
            frames, case["text_input_ids"], case["text_input_mask"], visual_index
        )
        _, losses = masked_token_losses(model.head, hidden[:, :, :12], case["mlm_labels"], "mean")
    tolerance = 1e-4 + 1e-4 * expected.abs().max().item()
    assert torch.allclose(losses, expected[expected != 0], atol=tolerance)
    everywhere = reduce_mlm_loss(losses, case["mlm_labels"].numel(), "all_positions")
    assert everywhere.item() == pytest.approx(expected.mean().item(), abs=tolerance)
    masked = reduce_mlm_loss(losses, case["mlm_labels"].numel(), "masked_tokens")
    assert masked.item() == pytest.approx(expected.sum().item() / 7, abs=tolerance)


def _fixture_tokenizer(tmp_path: Path) -> BertTokenizerFast:
    """A 1024-token WordPiece vocabulary with bert-base-uncased's special ids, as the
    fixture's synthetic one."""
    tokens = [f"[unused{i}]" for i in range(1024)]
    for index, token in ((0, "[PAD]"), (100, "[UNK]"), (101, "[CLS]"), (102, "[SEP]")):
        tokens[index] = token
    tokens[103] = "[MASK]"
    tokens[104:] = [f"w{i}" for i in range(104, 1024)]
    (tmp_path / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return BertTokenizerFast(str(tmp_path / "vocab.txt"))


def test_masking_draws_what_the_original_drew(case, tmp_path: Path) -> None:
    """Same seed, same draws: the 7 masked positions and their 80/10/10 replacements."""
    tokenizer = _fixture_tokenizer(tmp_path)
    torch.manual_seed(case["mask_seed"])
    ids, labels = TokenMasker(tokenizer, 0.15)(case["text_input_ids_unmasked"])
    assert torch.equal(ids, case["text_input_ids"])
    assert torch.equal(labels, case["mlm_labels"])


def test_the_mlm_decoder_stays_tied_to_the_word_embeddings(original_weights) -> None:
    model = load_original(original_weights, head="pretrain", num_attention_heads=2)
    decoder = model.head.predictions.decoder
    word = model.backbone.bert.embeddings.word_embeddings
    assert decoder.weight is word.weight and decoder.bias is model.head.predictions.bias
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scores = model.head.predictions(torch.randn(3, 128))
    scores.sum().backward()
    optimizer.step()
    assert decoder.weight is word.weight
