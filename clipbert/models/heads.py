"""Task heads on the pooled [CLS] output."""

from __future__ import annotations

from torch import Tensor, nn


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
