"""Any declared block as a causal character language model (docs/theory.md §8).

    tokens → embedding E → L causal layers of the block → RMSNorm → readout R → logits

* E ∈ R^{V×d}, entries N(0, 1): every input token has |x|² ≈ d, i.e. q0 ≈ 1, where the theory's
  trajectories start (``exponents_at_init`` predicts from q0 = 1, ρ0 = 0). Tokens of different
  characters are nearly orthogonal (ρ ≈ 0); repeats of one character are identical (ρ = 1), so a
  window's mean cosine is about Σ_c f_c² (character frequencies f_c), a few hundredths for text.
* The layers are built by ``sigprop.models`` from the config's block (``lm_architecture``,
  always causal): the same description, initialization and modules as every other part of
  sigprop. A config holds declared names (``sigprop.spec``): missing ones take the reference
  transformer's defaults, so {"alpha": 0.5, "sigma_w": 1} is the reference block.
* The final norm is sigprop's RMSNorm without gain, R ∈ R^{d×V} has entries N(0, 1/d), so the
  logits of the untrained model have unit variance and its loss is near log V.
* No positional embedding. Causal attention alone tells positions apart (token i averages over
  i tokens; causal LMs without positional encodings learn position this way: Haviv et al.,
  "Transformer Language Models without Positional Encodings Still Learn Positional
  Information", 2022), while adding a position vector to every token would move the input
  geometry away from the (q0, ρ0) the theory starts from, differently at every position. A
  model that must locate a token exactly (the copy task) still learns, more slowly.

Members of a stack (``build_stacked_lm``) are bit-for-bit the models ``build_lm`` builds: the
blocks come from ``sigprop.models.build.iter_stacked_blocks``; E and R from their own random
streams of the config's seed (``stream_seed(seed, "embedding" | "readout")``), independent of
the weight stream the blocks draw from.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sigprop.measure.ensemble import check_same_structure, stream_seed
from sigprop.models import RMSNormModule
from sigprop.models.build import iter_blocks, iter_stacked_blocks
from sigprop.spec import ALIASES, HYPERPARAMETERS, OPTIONS, Architecture, Serial

# The keys of a config that set the initialization of one LM: every declared hyperparameter,
# alias and structural option, and the initialization seed.
CONFIG_KEYS = (*(d.name for d in (*HYPERPARAMETERS, *ALIASES, *OPTIONS)), "seed")


class CausalLM(nn.Module):
    """logits = LN(blocks(E[tokens])) R for int64 ``tokens`` of shape ``(..., T)``.

    A stacked model (``build_stacked_lm``) holds every tensor with a leading member axis and is
    only a template: call it through ``torch.func.functional_call`` under ``vmap``.
    """

    def __init__(self, embedding: Tensor, blocks: list[nn.Module], readout: Tensor) -> None:
        super().__init__()
        self.embedding = nn.Parameter(embedding)
        self.blocks = nn.ModuleList(blocks)
        self.norm = RMSNormModule()
        self.readout = nn.Parameter(readout)

    def forward(self, tokens: Tensor) -> Tensor:
        x = F.embedding(tokens, self.embedding)
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.readout


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy (nats per token) of ``logits`` (..., V) against ``targets`` (...)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def lm_layer(config: dict) -> Serial:
    """The causal layer of a config dict (``lm_architecture``; "seed" is ignored here)."""
    return lm_architecture(config).layer()


def lm_architecture(config: dict) -> Architecture:
    """The block of a config dict: its declared values over the reference defaults, causal.

    Raises ``InvalidHyperparameter`` (a ``ValueError``) naming a value out of range or two keys
    that set one hyperparameter ("alpha" and "alpha_M"), and ``ValueError`` for an unknown key.
    """
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"config keys must be declared hyperparameters or options (or seed); "
                         f"got {unknown}")
    values = {k: v for k, v in config.items() if k not in ("seed", "causal")}
    return Architecture("lm").with_values(**values).with_values(causal=True)


def config_seed(config: dict) -> int:
    """The initialization seed of a config ("seed", default 0): a non-negative integer."""
    seed = config.get("seed", 0)
    if isinstance(seed, (float, np.floating)) and float(seed).is_integer():
        seed = int(seed)  # configs stored as JSON may carry 1.0 for 1
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def build_lm(
    config: dict,
    vocab_size: int,
    *,
    depth: int,
    width: int,
    dtype: torch.dtype = torch.float32,
) -> CausalLM:
    """One causal LM, initialized from the config's hyperparameters and seed."""
    seed = config_seed(config)
    blocks = list(iter_blocks(lm_layer(config), depth, width, seed=seed, dtype=dtype))
    embedding, readout = _embedding_and_readout([seed], vocab_size, width, dtype)
    return CausalLM(embedding[0], blocks, readout[0])


def build_stacked_lm(
    configs: Sequence[dict],
    vocab_size: int,
    *,
    depth: int,
    width: int,
    dtype: torch.dtype = torch.float32,
) -> CausalLM:
    """The S = len(configs) models ``build_lm(configs[m], ...)`` with every parameter and buffer
    stacked along a leading member axis (slice m is bit-for-bit member m's).

    The configs must share their structural options (one template serves all members).
    """
    layers = [lm_layer(config) for config in configs]
    seeds = [config_seed(config) for config in configs]
    check_same_structure(layers)
    blocks = list(iter_stacked_blocks(layers, seeds, depth, width, dtype=dtype))
    embedding, readout = _embedding_and_readout(seeds, vocab_size, width, dtype)
    return CausalLM(embedding, blocks, readout)


def _embedding_and_readout(
    seeds: Sequence[int], vocab_size: int, width: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """E ~ N(0, 1) of shape (S, V, d) and R ~ N(0, 1/d) of shape (S, d, V), one stream per seed.

    Drawn in float32 and widened, like the blocks (``BuildContext.gaussian``), so the float32
    and float64 models of a seed start from the same numbers.
    """
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2; got {vocab_size}")

    def draw(seed: int, purpose: str, *shape: int) -> Tensor:
        generator = torch.Generator().manual_seed(stream_seed(seed, purpose))
        return torch.randn(*shape, generator=generator, dtype=torch.float32).to(dtype)

    embedding = torch.stack([draw(s, "embedding", vocab_size, width) for s in seeds])
    readout = torch.stack([draw(s, "readout", width, vocab_size) for s in seeds]) / math.sqrt(width)
    return embedding, readout
