"""Named architectures: the reference transformer and the blocks people train.

A preset is a set of declared values (everything else keeps its declared default) and the depth
it describes. Weights use fan-in variances (σ = 1 is W ~ N(0, 1/fan-in)): a framework's absolute
standard deviation s at width d is σ = s·sqrt(d) (GPT-2's s = 0.02 is σ ≈ 0.55 at d = 768, and
σ_A = s²·d ≈ 0.31 for its query and key maps). Set the σ's to those values to mirror a given
width exactly. Rotary position embeddings (Llama) are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    """Values that differ from the declared defaults, the depth, one line on what it is, and
    the default ranges of phase-diagram axes where the declared ones do not fit."""

    values: dict[str, Any]
    depth: int | None
    summary: str
    plot_ranges: dict[str, tuple[float, float]] | None = None  # axes drawn over other ranges


_STANDARD = {"skip": 1.0, "branch": 1.0, "sigma_A": 1.0, "sigma_w": 1.0, "heads": 4,
             "out_proj": True, "ff_ratio": 4.0, "activation": "gelu"}

PRESETS: dict[str, Preset] = {
    "reference": Preset(
        {"alpha": 0.5}, None,
        "the paper's transformer: pre-RMSNorm, residuals sqrt(1 − α²) X + α f(N X), one head "
        "without output map, tanh MLP with d_ff = d"),
    "pre-ln": Preset(
        {**_STANDARD, "block": "pre", "norm": "layer"}, 24,
        "Pre-LN block: X ← X + f(LN X), 4 heads with W_O, GELU MLP with d_ff = 4d"),
    "post-ln": Preset(
        {**_STANDARD, "block": "post", "norm": "layer"}, 24,
        "Post-LN block (original Transformer): X ← LN(X + f(X))"),
    "gpt2": Preset(
        {**_STANDARD, "block": "pre", "norm": "layer", "branch": "1/sqrt(2*L)"}, 12,
        "GPT-2: Pre-LN, branches scaled by 1/sqrt(2L) as GPT-2 scales its output projections"),
    "llama": Preset(
        {**_STANDARD, "block": "pre", "norm": "rms", "activation": "silu", "gated": True,
         "ff_ratio": 11008 / 4096}, 32,
        "Llama: pre-RMSNorm, unit residuals, SwiGLU MLP with d_ff = 2.69 d (no rotary "
        "embedding)"),
    "bert": Preset(
        {**_STANDARD, "block": "post", "norm": "layer"}, 12,
        "BERT: Post-LN, unit residuals, GELU MLP with d_ff = 4d, bidirectional"),
    "mlp": Preset(
        {"network": "mlp", "activation": "tanh", "sigma_w": 1.5, "sigma_b": 0.3}, None,
        "plain deep MLP (Poole et al. 2016): h ← W φ(h) + b, W ~ N(0, σ_w²/d), b ~ N(0, σ_b²), "
        "tanh, no norm, no residual",
        {"sigma_w": (0.5, 3.0), "sigma_b": (0.0, 1.0)}),
    "resmlp": Preset(
        {"network": "resmlp", "block": "pre", "norm": "layer", "skip": 1.0, "branch": 1.0,
         "sigma_w": 1.0, "ff_ratio": 4.0, "activation": "gelu"}, 24,
        "residual MLP: X ← X + MLP(LN X), GELU MLP with d_ff = 4d, no attention"),
}
"""Named architectures: the reference transformer of the paper and the blocks people train
(pre-ln, post-ln, gpt2, llama, bert, mlp, resmlp …), each a set of declared values over the
reference defaults, an own depth where it has one, and a description."""
