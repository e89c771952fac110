"""The theory as a warm start: the same constrained search on the wide-limit totals of an
equivalent sigprop description, before any probe of the real model.

Covered: the Hugging Face families whose blocks sigprop's presets describe with unit residuals
and a norm before each branch, GPT-2 (``pre-ln`` with GELU) and Llama (``llama``: RMSNorm, gated
SiLU MLP; rotary embeddings are not modelled). A framework draws weights with an absolute
standard deviation s = ``initializer_range`` (0.02); in sigprop's fan-in units that is
σ = s·sqrt(fan-in), so at width d:

* σ_A = s²·d (query and key maps, logits on normalized inputs), σ_w = s·sqrt(d) (MLP input);
* the value and output maps (theory: variance 1/d each) put a factor (s·sqrt(d))² on the
  attention branch, b_A = (s·sqrt(d))² / sqrt(2L) for GPT-2, whose output maps are drawn with
  s / sqrt(2L);
* the MLP output map gives σ_2 = s·sqrt(d_ff) (/ sqrt(2L) for GPT-2), times s·sqrt(d) for the
  linear "up" map of a gated MLP (theory: variance 1/d);
* the input norm q0 = s_wte² (+ s_wpe² for GPT-2's position embeddings, drawn with s/2).

The knobs act on the description as on the model: mlp_input multiplies σ_w, attn_logits σ_A,
attn_values and attn_branch b_A, mlp_branch σ_2. The totals are L·λ_a^(L) of the theory (ρ0 → 1),
log_jac_L of its trajectory from q0 and ρ0 = 0 (distinct random tokens), its normalized
version log_jac_L − log(q_L/q0) (a per-token norm divides the tangent by the token's norm), and
the departure

    sin²∠(X_L, X_0) = 1 − ⟨X_L, X_0⟩² / (|X_L|² |X_0|²) = 1 − q0 / q_L,

because each branch ends in a map with fresh zero-mean weights, uncorrelated with X_0 in the
wide limit, so that ⟨X_L, X_0⟩ / (n d) stays q0 through unit residuals. The bidirectional theory
stands in for causal attention (it collapses a little more: docs/theory.md §9). Models the
theory does not cover start from the framework's own initialization (all factors 1).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from torch import nn

from sigprop.init.ensemble import Evaluation
from sigprop.init.solve import Solution, solve
from sigprop.spec import Architecture
from sigprop.theory.depth import depth_profile
from sigprop.theory.dynamics import trajectory

KNOB_HYPERPARAMETER = {"mlp_input": "sigma_w", "attn_logits": "sigma_A",
                       "attn_values": "branch_a", "attn_branch": "branch_a",
                       "mlp_branch": "sigma_2"}


@dataclass(frozen=True)
class TheoryModel:
    """A sigprop description standing in for a model: preset, declared values, depth, q0."""

    preset: str
    values: dict[str, float]
    depth: int
    q0: float
    n_tokens: int

    def to_json(self) -> dict:
        return {"preset": self.preset, "values": self.values, "depth": self.depth,
                "q0": self.q0}


class TheoryEnsemble:
    """``ScaledEnsemble``'s interface (``evaluate``, ``history``) on the theory's totals."""

    def __init__(self, theory: TheoryModel, gradient: str = "raw") -> None:
        self.theory = theory
        self.gradient = gradient
        self.history: list[Evaluation] = []

    def evaluate(self, scales: dict[str, float]) -> Evaluation:
        values = dict(self.theory.values)
        for knob, factor in scales.items():
            name = KNOB_HYPERPARAMETER[knob]
            values[name] = values[name] * factor
        t = self.theory
        layer = Architecture.load(t.preset).with_values(**values).theory_layer(t.depth)
        gap = float(depth_profile(layer, t.n_tokens, t.depth, t.q0, 1.0).log_spread[-1])
        path = trajectory(layer, t.n_tokens, t.q0, 0.0, t.depth)
        jac, q_ratio = float(path.log_jac[-1]), float(path.q[-1]) / t.q0
        evaluation = Evaluation(dict(scales), float(gap), jac, jac - math.log(q_ratio),
                                1.0 - 1.0 / q_ratio, self.gradient)
        self.history.append(evaluation)
        return evaluation


def hf_theory_model(model: nn.Module, n_tokens: int) -> TheoryModel | None:
    """The description of a Hugging Face GPT-2 or Llama (from its config), else None."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in ("gpt2", "llama"):
        return None
    s = float(config.initializer_range)
    if kind == "gpt2":
        d, depth, heads = config.n_embd, config.n_layer, config.n_head
        d_ff = config.n_inner or 4 * d
        depth_scale = 1 / math.sqrt(2 * depth)
        values = dict(heads=heads, sigma_A=s * s * d, sigma_w=s * math.sqrt(d), sigma_b=0.0,
                      sigma_2=s * math.sqrt(d_ff) * depth_scale,
                      branch_a=s * s * d * depth_scale, branch_m=1.0)
        return TheoryModel("pre-ln", values, depth, s * s * 1.25, n_tokens)
    d, depth, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
    if getattr(config, "num_key_value_heads", heads) != heads:
        return None  # grouped-query attention: not described
    d_ff = config.intermediate_size
    values = dict(heads=heads, sigma_A=s * s * d, sigma_w=s * math.sqrt(d), sigma_b=0.0,
                  sigma_2=s * math.sqrt(d_ff) * s * math.sqrt(d), branch_a=s * s * d,
                  branch_m=1.0, ff_ratio=d_ff / d)
    return TheoryModel("llama", values, depth, s * s, n_tokens)


@dataclass(frozen=True)
class WarmStart:
    theory: TheoryModel
    solution: Solution
    evaluations: int
    seconds: float

    def to_json(self) -> dict:
        best = self.solution.best
        return {"source": "theory", "description": self.theory.to_json(),
                "scales": best.scales, "log_gap_L": best.log_gap_L, "log_jac_L": best.log_jac_L,
                "departure": best.departure, "evaluations": self.evaluations,
                "seconds": round(self.seconds, 2)}


def theory_start(theory: TheoryModel, start: dict[str, float],
                 bounds: dict[str, tuple[float, float]], *, min_departure: float,
                 tolerance: float, gradient: str = "raw") -> WarmStart:
    """The constrained search of ``solve`` on the theory's totals."""
    started = time.perf_counter()
    ensemble = TheoryEnsemble(theory, gradient)
    solution = solve(ensemble, start, bounds, min_departure=min_departure, tolerance=tolerance)
    return WarmStart(theory, solution, len(ensemble.history), time.perf_counter() - started)
