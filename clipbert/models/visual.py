"""From CNN feature maps to visual tokens: the grid encoder and the visual embeddings."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GridEncoder(nn.Sequential):
    """conv3x3 (no bias) -> maxpool 2x2 -> ReLU, in this order, as in the original.

    A Sequential keeps the conv's key at ``0.weight`` (original ``cnn.grid_encoder.0.weight``).
    The conv keeps PyTorch's default init, as the original's does.
    """

    def __init__(self, in_channels: int, hidden_size: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden_size, kernel_size=3, padding=1, bias=False),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.ReLU(inplace=True),
        )


class VisualEmbeddings(nn.Module):
    """Frame grids -> visual tokens: temporal mean, 2-D position, visual type, LayerNorm.

    There is no temporal or 1-D position embedding (the original creates an unused 1-D table;
    we leave it out). Random token sampling (Pixel-BERT style, used in pre-training) keeps one
    sorted random subset of grid cells for the whole batch, in training mode only.
    """

    def __init__(
        self,
        hidden_size: int,
        max_grid_rows: int = 100,
        max_grid_cols: int = 100,
        layer_norm_eps: float = 1e-12,
        dropout: float = 0.1,
        random_token_sampling: int = 0,
    ) -> None:
        super().__init__()
        self.row_position_embeddings = nn.Embedding(max_grid_rows, hidden_size)
        self.col_position_embeddings = nn.Embedding(max_grid_cols, hidden_size)
        self.token_type_embeddings = nn.Embedding(1, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.random_token_sampling = random_token_sampling

    def forward(self, grid: Tensor) -> Tensor:
        """grid (B, T, h, w, H) -> tokens (B, h*w or the sampled count, H), row-major."""
        grid = grid.mean(dim=1)
        rows, cols = grid.shape[1:3]
        grid = grid + self.row_position_embeddings.weight[:rows, None, :]
        grid = grid + self.col_position_embeddings.weight[None, :cols, :]
        tokens = grid.flatten(1, 2)
        if self.training and 0 < self.random_token_sampling < tokens.shape[1]:
            tokens = tokens[:, self._sample_tokens(tokens.shape[1]).to(tokens.device)]
        tokens = tokens + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(tokens))

    def _sample_tokens(self, num_tokens: int) -> Tensor:
        # Drawn on the CPU generator so a seed gives the same cells on every device.
        return torch.randperm(num_tokens)[: self.random_token_sampling].sort().values
