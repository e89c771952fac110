"""The networks of the rescue suite, as a user builds them with PyTorch's (or Hugging Face's)
modules at the framework's default initialization.

* ``CausalLM``: a token-id language model around a list of blocks: embedding (``nn.Embedding``,
  N(0, 1)), learned positions N(0, 0.02²), the blocks (each called with the causal mask),
  a final LayerNorm and a linear head. Its blocks are ``nn.TransformerEncoderLayer`` (Post-LN
  by default, ``norm_first=True`` for Pre-LN; dropout 0, ReLU MLP of width 4d) or
  ``NoNormBlock`` (x ← x + SA(x), x ← x + MLP(x), no normalization).
* ``hf_lm``: Hugging Face ``GPT2LMHeadModel`` or ``BertLMHeadModel`` (causal) from a config,
  dropout 0, random initialization, nothing downloaded.
* ``TanhMLP``: a deep tanh MLP on 8 × 8 digits: h ← tanh(W h + b), ``nn.Linear`` layers
  (``ResidualMLP``: the same with Pre-LayerNorm residuals, its well-conditioned reference).
* ``PlainCNN``: a deep ReLU CNN without normalization or skip connections on 8 × 8 digits
  (``ResidualCNN``: with BatchNorm and identity skips, its reference).
* ``SequenceModel``: an LSTM or GRU (one layer) reading token ids, a linear readout per step.

Every model keeps its blocks in one ``nn.ModuleList`` (``blocks``; ``rnn`` for the recurrent
one), where ``sigprop.diagnose`` and ``sigprop.critical_init`` find them.
"""

from __future__ import annotations

import torch
from torch import nn

CONTEXT = 64  # characters per window of the language models


class CausalLM(nn.Module):
    """Token ids (B, T) → logits (B, T, V) through ``blocks`` with a causal mask."""

    def __init__(self, blocks: list[nn.Module], width: int, vocab_size: int,
                 context: int = CONTEXT) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, width)
        self.positions = nn.Parameter(torch.randn(context, width) * 0.02)
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        steps = ids.shape[-1]
        x = self.embedding(ids) + self.positions[:steps]
        mask = nn.Transformer.generate_square_subsequent_mask(steps, device=ids.device,
                                                              dtype=x.dtype)
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)
        return self.head(self.norm(x))


def encoder_lm(depth: int, width: int, heads: int, vocab_size: int, norm_first: bool = False
               ) -> CausalLM:
    """A stack of ``nn.TransformerEncoderLayer(width, heads, 4 width, dropout=0)`` as a causal
    LM: Post-LN (PyTorch's default) or, with ``norm_first``, Pre-LN."""
    return CausalLM([nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0,
                                                batch_first=True, norm_first=norm_first)
                     for _ in range(depth)], width, vocab_size)


class NoNormBlock(nn.Module):
    """x ← x + SA(x); x ← x + W_2 relu(W_1 x + b_1) + b_2: unit residuals, no normalization,
    ``nn.MultiheadAttention`` and ``nn.Linear`` at their default initialization. Each branch
    reads its input through ``pre_attention`` / ``pre_mlp`` and leaves through
    ``branch_attention`` / ``branch_mlp`` (identities), where a published fix can put an
    element-wise norm (DyT) or a scale (ReZero)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=0.0, batch_first=True)
        self.linear1 = nn.Linear(width, 4 * width)
        self.linear2 = nn.Linear(4 * width, width)
        self.pre_attention, self.pre_mlp = nn.Identity(), nn.Identity()
        self.branch_attention, self.branch_mlp = nn.Identity(), nn.Identity()

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        y = self.pre_attention(x)
        attended = self.self_attn(y, y, y, attn_mask=src_mask, is_causal=is_causal,
                                  need_weights=False)[0]
        x = x + self.branch_attention(attended)
        y = self.pre_mlp(x)
        return x + self.branch_mlp(self.linear2(torch.relu(self.linear1(y))))


def no_norm_lm(depth: int, width: int, heads: int, vocab_size: int) -> CausalLM:
    """A transformer LM without normalization in its blocks (``NoNormBlock``)."""
    return CausalLM([NoNormBlock(width, heads) for _ in range(depth)], width, vocab_size)


def hf_lm(kind: str, depth: int, width: int, heads: int, vocab_size: int,
          context: int = CONTEXT) -> nn.Module:
    """Hugging Face ``GPT2LMHeadModel`` (kind "gpt2") or causal ``BertLMHeadModel`` (kind
    "bert") from a config: dropout 0, the library's own initialization."""
    import transformers

    if kind == "gpt2":
        config = transformers.GPT2Config(
            n_layer=depth, n_embd=width, n_head=heads, vocab_size=vocab_size,
            n_positions=context, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            use_cache=False, bos_token_id=None, eos_token_id=None)
        return transformers.GPT2LMHeadModel(config)
    if kind == "bert":
        config = transformers.BertConfig(
            num_hidden_layers=depth, hidden_size=width, num_attention_heads=heads,
            intermediate_size=4 * width, vocab_size=vocab_size, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, is_decoder=True, max_position_embeddings=context,
            use_cache=False)
        return transformers.BertLMHeadModel(config)
    raise ValueError(f"kind must be gpt2 or bert; got {kind!r}")


class Dense(nn.Module):
    """h ← φ(W h + b) with ``nn.Linear``'s default initialization."""

    def __init__(self, width: int, activation: str = "tanh") -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.activation = {"tanh": torch.tanh, "relu": torch.relu}[activation]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(h))


class TanhMLP(nn.Module):
    """Images (B, 1, 8, 8) → logits (B, 10): 64 pixels into ``depth`` tanh layers of width 64
    (``blocks``), a linear readout. (Hidden states (…, 64) also go straight in: the pixels
    are the first layer's input.)"""

    def __init__(self, depth: int, width: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Dense(width) for _ in range(depth))
        self.readout = nn.Linear(width, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = images.flatten(-3) if images.dim() == 4 else images
        for block in self.blocks:
            h = block(h)
        return self.readout(h)


class ResidualDense(nn.Module):
    """h ← h + tanh(W LN(h) + b): a Pre-LayerNorm residual tanh layer."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + torch.tanh(self.linear(self.norm(h)))


class ResidualMLP(TanhMLP):
    """``TanhMLP`` with Pre-LayerNorm residual layers (``ResidualDense``): the well-conditioned
    network of the same depth and width."""

    def __init__(self, depth: int, width: int = 64, classes: int = 10) -> None:
        super().__init__(0, width, classes)
        self.blocks = nn.ModuleList(ResidualDense(width) for _ in range(depth))


class ConvLayer(nn.Module):
    """x ← relu(conv3×3(x)), padding 1, ``nn.Conv2d``'s default initialization."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class PlainCNN(nn.Module):
    """Images (B, 1, 8, 8) → logits (B, 10): a 3 × 3 stem to ``channels``, ``depth`` ConvLayers
    (``blocks``: no normalization, no skip connections), global average pooling, a linear
    readout."""

    def __init__(self, depth: int, channels: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.blocks = nn.ModuleList(ConvLayer(channels) for _ in range(depth))
        self.readout = nn.Linear(channels, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(images))
        for block in self.blocks:
            x = block(x)
        return self.readout(x.mean(dim=(-2, -1)))


class ResidualConv(nn.Module):
    """x ← x + relu(BN(conv3×3(x))): a residual layer with batch normalization."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.bn(self.conv(x)))


class ResidualCNN(PlainCNN):
    """``PlainCNN`` with BatchNorm and identity skips (``ResidualConv``): the well-conditioned
    network of the same depth and width."""

    def __init__(self, depth: int, channels: int = 16, classes: int = 10) -> None:
        super().__init__(0, channels, classes)
        self.blocks = nn.ModuleList(ResidualConv(channels) for _ in range(depth))


class SequenceModel(nn.Module):
    """Token ids (B, T) → logits (B, T, V): an embedding, one LSTM or GRU layer of ``hidden``
    units (``rnn``) and a linear readout at every step."""

    def __init__(self, kind: str, hidden: int, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind](hidden, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(self.embedding(ids))
        return self.readout(states)
