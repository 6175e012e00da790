"""Task heads on the pooled [CLS] output, and how per-clip scores become one per text."""

from __future__ import annotations

from torch import Tensor, nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLMPredictionHead, BertPreTrainingHeads

SCORE_AGGREGATIONS = ("mean", "max", "lse")


class MLPClassifier(nn.Module):
    """dropout -> Linear(H, 2H) -> ReLU -> Linear(2H, C): every ClipBERT fine-tuning head.

    Keys ``classifier.0.*`` / ``classifier.2.*`` match the original ``transformer.classifier.*``.
    Weights get BERT init (normal with ``initializer_range``, zero bias), as in the original.
    """

    def __init__(
        self,
        hidden_size: int,
        num_labels: int,
        dropout: float = 0.1,
        initializer_range: float = 0.02,
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Sequential(
            nn.Linear(hidden_size, 2 * hidden_size),
            nn.ReLU(inplace=True),
            nn.Linear(2 * hidden_size, num_labels),
        )
        for layer in (self.classifier[0], self.classifier[2]):
            nn.init.normal_(layer.weight, std=initializer_range)
            nn.init.zeros_(layer.bias)

    def forward(self, pooled: Tensor) -> Tensor:
        """pooled (..., H) -> logits (..., C)."""
        return self.classifier(self.dropout(pooled))


def aggregate_clip_logits(logits: Tensor, how: str) -> Tensor:
    """Combine per-clip logits (E, N, C) into one score per text (E, C).

    ``lse`` (logsumexp over clips) followed by cross-entropy is exactly the original's lse
    training loss, so one code path serves training and inference.
    """
    if how == "mean":
        return logits.mean(dim=1)
    if how == "max":
        return logits.max(dim=1).values
    if how == "lse":
        return logits.logsumexp(dim=1)
    raise ValueError(f"score_agg must be one of {SCORE_AGGREGATIONS}, got '{how}'")


def group_options(scores: Tensor, num_options: int) -> Tensor:
    """One-output scores of option rows (Q * options, N, 1), consecutive per question, into
    (Q, N, options): the original's ``ClipBertForMultipleChoice`` reshape, per clip."""
    return scores.squeeze(-1).unflatten(0, (-1, num_options)).transpose(1, 2)


def tie_mlm_head(
    head: BertLMPredictionHead, word_embeddings: nn.Embedding, config: BertConfig
) -> BertLMPredictionHead:
    """BERT's MLM head with the decoder weight shared with the word embeddings, its bias with
    ``head.bias``, and BERT init elsewhere."""
    head.decoder.weight = word_embeddings.weight
    head.decoder.bias = head.bias
    nn.init.normal_(head.transform.dense.weight, std=config.initializer_range)
    nn.init.zeros_(head.transform.dense.bias)
    nn.init.zeros_(head.bias)
    return head


class PretrainingHeads(nn.Module):
    """MLM over text positions and image-text matching (ITM) on the pooled output.

    The layout of HF ``BertPreTrainingHeads`` (keys ``predictions.*``, ``seq_relationship.*``,
    the original's ``transformer.cls.*``), with the MLM decoder weight tied to the word
    embeddings and its bias to ``predictions.bias``, as in BERT. ITM label 1 means matched
    (the opposite of BERT's NSP, whose weights the original starts from).
    """

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        heads = BertPreTrainingHeads(config)
        self.predictions = tie_mlm_head(heads.predictions, word_embeddings, config)
        self.seq_relationship = heads.seq_relationship
        nn.init.normal_(self.seq_relationship.weight, std=config.initializer_range)
        nn.init.zeros_(self.seq_relationship.bias)

    def forward(self, text_hidden: Tensor, pooled: Tensor) -> tuple[Tensor, Tensor]:
        """text_hidden (..., L, H), pooled (..., H) -> MLM (..., L, V) and ITM (..., 2) logits."""
        return self.predictions(text_hidden), self.seq_relationship(pooled)
