"""A user's model: a stack of Post-LN ``nn.TransformerEncoderLayer`` (PyTorch's default), and the
causal character language model built around it.

Find a critical initialization on the stack, from the command line (≤ 30 s on 2 cores)::

    sigprop init examples.post_ln_stack:stack --out init.json

and apply it to the language model before training::

    import sigprop
    from examples.post_ln_stack import language_model
    lm = language_model()
    sigprop.apply_init(lm, "init.json")   # the same blocks: the recorded names match

``benchmarks/post_ln_stack.py`` times the first and trains both language models.
"""

from __future__ import annotations

import torch
from torch import nn

DEPTH, WIDTH, HEADS, CONTEXT = 32, 64, 4, 64


class Stack(nn.Module):
    """``DEPTH`` × ``nn.TransformerEncoderLayer(WIDTH, HEADS, 4 WIDTH, dropout=0)``, Post-LN."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, dropout=0.0, batch_first=True)
            for _ in range(DEPTH))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, src_mask=mask, is_causal=mask is not None)
        return x


class LanguageModel(nn.Module):
    """Token ids → logits: embedding, learned positions, the stack with a causal mask, a final
    LayerNorm and a linear head."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, WIDTH)
        self.positions = nn.Parameter(torch.randn(CONTEXT, WIDTH) * 0.02)
        self.stack = Stack()
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        steps = ids.shape[-1]
        x = self.embedding(ids) + self.positions[:steps]
        mask = nn.Transformer.generate_square_subsequent_mask(steps, device=ids.device,
                                                              dtype=x.dtype)
        return self.head(self.norm(self.stack(x, mask)))


def stack(seed: int = 0) -> Stack:
    """The factory ``sigprop init`` calls (after ``torch.manual_seed(seed)``)."""
    return Stack()


def language_model(vocab_size: int = 84) -> LanguageModel:
    """The model that trains (84: the characters of sigprop's Shakespeare)."""
    return LanguageModel(vocab_size)
