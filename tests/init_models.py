"""Small models for tests/test_init.py, loaded as 'init_models:NAME' factories."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """Pre-LN ``nn.TransformerEncoder`` (PyTorch's default init), tokens (batch, n, d) in."""

    def __init__(self, layers: int = 8, width: int = 32, heads: int = 2) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def encoder(seed: int = 0) -> nn.Module:
    return Encoder()


class MLPStack(nn.Module):
    """Residual MLP blocks only: no attention to tune."""

    def __init__(self, layers: int = 6, width: int = 32) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def mlp_stack() -> nn.Module:
    return MLPStack()


def no_blocks() -> nn.Module:
    return nn.Linear(32, 32)
