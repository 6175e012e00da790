"""Task heads on the pooled [CLS] output, and how per-clip scores become one per text."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLMPredictionHead, BertPreTrainingHeads

SCORE_AGGREGATIONS = ("mean", "max", "lse")
IGNORE_INDEX = -100  # the label of a text position that carries no MLM target
# How the MLM loss of a batch is reduced: the original takes the mean over every text position
# (unmasked ones count as 0), the usual way is the mean over the masked tokens.
MLM_REDUCTIONS = ("all_positions", "masked_tokens")


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


def masked_token_losses(
    heads: PretrainingHeads, text_hidden: Tensor, mlm_labels: Tensor, score_agg: str
) -> tuple[Tensor, Tensor]:
    """MLM scores and cross-entropy of the masked positions only: text_hidden (E, N, L, H)
    over N clips, mlm_labels (E, L) -> scores (M, V) aggregated over clips, losses (M,).

    The original scores every text position and zeroes the unmasked ones' losses; scoring
    the M masked positions alone gives the same losses for a fraction of the vocabulary
    projection's work and memory.
    """
    masked = mlm_labels != IGNORE_INDEX
    per_clip = heads.predictions(text_hidden.transpose(1, 2)[masked])  # (M, N, V)
    scores = aggregate_clip_logits(per_clip, score_agg)
    return scores, F.cross_entropy(scores.float(), mlm_labels[masked], reduction="none")


def reduce_mlm_loss(token_losses: Tensor, num_positions: int, reduction: str) -> Tensor:
    """One MLM loss from the masked tokens' losses: their sum over all ``num_positions`` text
    positions (``all_positions``, the original's) or their mean (``masked_tokens``). A batch
    that masked nothing contributes 0, with the graph kept for every process's backward."""
    if reduction == "all_positions":
        return token_losses.sum() / max(num_positions, 1)
    if reduction == "masked_tokens":
        return token_losses.mean() if token_losses.numel() else token_losses.sum()
    raise ValueError(f"mlm_loss_reduction must be one of {MLM_REDUCTIONS}, got '{reduction}'")
