"""Empirical signal propagation of any ``torch.nn.Module`` built of a sequence of blocks.

Per layer l = 0..L (l = 0 the hidden states entering block 0), mean ± standard error over seeds:

* q, p, ρ, 1 − ρ of C = X Xᵀ / d (``token_geometry``, docs/theory.md §1);
* ``effective_rank`` of C: exp of the Shannon entropy of its eigenvalues normalized to sum 1
  (Roy & Vetterli 2007), from 1 (collapsed tokens) to n (orthogonal tokens of equal norm);
* ``cos_min``, ``cos_max``: the smallest and largest cosine between two distinct tokens;
* ``log_jac`` = log(‖∂X_l/∂X_0‖_F² / (n d)) from ``n_probes`` probes on the sphere |v|² = n d
  (``sphere_probes``: unbiased for ‖J‖_F², as in ``trajectory.py``);
* ``log_jac_norm`` = the same for the token directions x_i/|x_i|·sqrt(d), what a final norm
  passes on to the loss, relative to l = 0: log of mean_k Σ_i d |P⊥_i (J_l v_k)_i|² / |x_i|²
  over the same at l = 0, with P⊥_i the projection orthogonal to token i. Through unit
  residuals the tokens' norm grows (q_l) and log_jac grows with it: log_jac_l ≈ log(q_l/q_0) +
  log_jac_norm_l in a Pre-LN model;
* ``log_spread`` = log D_l near collapse (``collapse.py``), D_0 = 1;
* ``departure`` = sin² of the angle between X_l and X_0 as vectors in R^{n d}: 0 while the
  blocks are the identity (the trivial way to make both exponents vanish), 1 once X_l has
  forgotten X_0;
* ``departure_stage`` = the same from the first state of l's stage (the run of layers whose
  states have X_l's shape): ``departure`` when the shape never changes; a convolutional
  network's departure where channels and resolution change;
all from one batched jvp pass per seed (``model_probe.py``).

Two kinds of exponents. Over the whole model, at its own depth L (the finite-depth exponents
of docs/theory.md §6, which ``sigprop init`` drives to zero):

    λ_a^(L) = log D_L / L,   λ_g^(L) = log_jac_L / L,

with log D_L from the collapsed state (the limit ρ0 → 1) and log_jac_L from the model's own
embeddings of random inputs.

And the late-layer rates per seed, both the mean per-layer growth after ``burn_in`` layers (default L // 2, so
that the forward geometry has settled), as in ``exponents.py``; a model whose initialization
scales with depth (GPT-2 draws its output projections with std 0.02 / sqrt(2 L)) has per-layer
rates ∝ 1/L, and then λ L is the depth-independent number:

    λ_g = (log_jac_L − log_jac_b) / (L − b)
    λ_a = (log D_L − log D_b) / (L − b)

λ_a: X_0 = 1 xᵀ, all tokens equal to one random x with |x|² = q_in d (q_in the norm of the
model's own inputs: 1 for plain modules), which identical-token invariance keeps collapsed
through every block (causal masks and rotary encodings included), and one jvp pass with a
token-mean-zero tangent ⊥ x. Forward mode is exactly linear, so no renormalization is needed
to stay linear; it is needed only against overflow, which float64 does not reach while
|λ| L < 700 (non-finite values are reported). The collapsed line is invariant, so the common
mode of the tangent never feeds token differences back; norm differences (the part along x) do,
at O(1/d) per layer. ``empirical_lambda_a`` (Benettin, per-layer projection) drops them, this
exact linearization keeps them. Per seed, over 8 layers at n = 8, the two differed by ≤ 0.005
at d = 512, ≤ 0.02 at d = 128 and up to 0.2 at d = 32, inside the seed spread at d ≥ 128.
A causal model also leaks differences into the common mode, which only costs precision once
|P T_l| / |T_l| < 1e-12 (reported). Identical tokens stay identical only to rounding (Llama's
eager softmax runs in float32: 1 − ρ ≈ 1e-20), which a chaotic model amplifies; a collapsed
state with 1 − ρ > 1e-6 is reported too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from sigprop.measure.blocks import DiagnoseError
from sigprop.measure.ensemble import check_seeds
from sigprop.measure.families import NOUNS, Nouns
from sigprop.measure.lyapunov import Estimate, estimate
from sigprop.measure.model_probe import ModelProbe
from sigprop.measure.source import ModelSource
from sigprop.runtime.devices import resolve_device
from sigprop.runtime.values import finite_or_none
from sigprop.theory.regimes import angle_regime, gradient_regime

LAYER_FIELDS = ("q", "p", "rho", "one_minus_rho", "effective_rank", "cos_min", "cos_max",
                "log_jac", "log_jac_norm", "log_spread", "departure", "departure_stage")
COLLAPSED = 1e-3    # 1 − ρ_L below this: the tokens have collapsed (docs/theory.md §8)


@dataclass(frozen=True)
class Diagnosis:
    """Per-layer arrays ``layers[name]`` of shape (seeds, L + 1), names ``LAYER_FIELDS``;
    the late-layer rates λ_a and λ_g as ``Estimate`` (mean, stderr, per seed), and the whole
    model's totals ``log_gap_L``, ``log_jac_L`` and finite-depth rates ``lambda_a_depth``,
    ``lambda_g_depth`` (totals / L) as properties."""

    description: str
    block_path: str
    depth: int
    width: int
    n_tokens: int
    seeds: tuple[int, ...]
    burn_in: int
    layers: dict[str, np.ndarray]
    lambda_a: Estimate
    lambda_g: Estimate
    warnings: tuple[str, ...] = field(default=())
    family: str = "transformer"
    tokens: tuple[int, ...] | None = None
    widths: tuple[int, ...] | None = None

    @property
    def nouns(self) -> Nouns:
        """The family's words for a token and a layer (``families.NOUNS``)."""
        return NOUNS[self.family]

    @property
    def tokens_per_layer(self) -> tuple[int, ...]:
        """n at every layer l = 0..L (a convolutional network's resolution changes)."""
        return self.tokens or (self.n_tokens,) * (self.depth + 1)

    @property
    def widths_per_layer(self) -> tuple[int, ...]:
        """d at every layer l = 0..L (a convolutional network's channels change)."""
        return self.widths or (self.width,) * (self.depth + 1)

    @property
    def phase(self) -> str:
        """ordered / chaotic / near the edge for the total log_gap_L = L·λ_a^(L), "undefined"
        where it could not be measured (``sigprop.theory.regimes``)."""
        return str(angle_regime(_finite_or_nan(self.log_gap_L.mean)))

    @property
    def gradients(self) -> str:
        """vanishing / exploding / near the edge for the total log_jac_L = L·λ_g^(L),
        "undefined" where it could not be measured (``sigprop.theory.regimes``)."""
        return str(gradient_regime(_finite_or_nan(self.log_jac_L.mean)))

    def verdict(self, depth: int | None = None) -> str:
        """The phase and the gradients in plain words, and by how much (``verdict``)."""
        return verdict(self, depth)

    def plot(self, path: str | Path) -> Path:
        """The per-layer figure (``sigprop.plots.diagnose``) as a PNG at ``path``."""
        from sigprop.plots.diagnose import plot_diagnosis

        return plot_diagnosis(self, Path(path))

    def __repr__(self) -> str:
        return (f"Diagnosis({self.description!r}, depth={self.depth}, seeds={len(self.seeds)}, "
                f"log_gap_L={self.log_gap_L.mean:+.3g}, log_jac_L={self.log_jac_L.mean:+.3g}, "
                f"phase={self.phase!r}, gradients={self.gradients!r})")

    @property
    def log_gap_L(self) -> Estimate:
        """log D_L = log((1 − ρ_L)/(1 − ρ_0)) near collapse over the whole model, per seed."""
        return estimate(self.layers["log_spread"][:, -1])

    @property
    def log_jac_L(self) -> Estimate:
        """log(‖∂X_L/∂X_0‖_F² / (n d)) over the whole model, per seed."""
        return estimate(self.layers["log_jac"][:, -1])

    @property
    def log_jac_norm_L(self) -> Estimate:
        """The gradient total of the token directions (what a final norm passes on)."""
        return estimate(self.layers["log_jac_norm"][:, -1])

    @property
    def lambda_a_depth(self) -> Estimate:
        """Finite-depth λ_a^(L) = log_gap_L / L: the mean per-layer rate over all L layers."""
        return estimate(self.layers["log_spread"][:, -1] / self.depth)

    @property
    def lambda_g_depth(self) -> Estimate:
        """Finite-depth λ_g^(L) = log_jac_L / L."""
        return estimate(self.layers["log_jac"][:, -1] / self.depth)

    def mean(self, name: str) -> np.ndarray:
        return self.layers[name].mean(axis=0)

    def stderr(self, name: str) -> np.ndarray:
        values = self.layers[name]
        if values.shape[0] < 2:
            return np.full(values.shape[1], np.nan)
        return values.std(axis=0, ddof=1) / math.sqrt(values.shape[0])

    def to_json(self) -> dict:
        """{"lambda_a", "lambda_a_stderr", "lambda_g", ..., "layers": [{"l", "q", "q_stderr",
        …}, …]}; NaN and infinities become None."""
        means = {name: self.mean(name) for name in LAYER_FIELDS}
        stderrs = {name: self.stderr(name) for name in LAYER_FIELDS}
        layers = [
            {"l": l, **{name: finite_or_none(means[name][l]) for name in LAYER_FIELDS},
             **{f"{name}_stderr": finite_or_none(stderrs[name][l]) for name in LAYER_FIELDS}}
            for l in range(self.depth + 1)
        ]
        exponents = {}
        for name in ("lambda_a", "lambda_g", "lambda_a_depth", "lambda_g_depth", "log_gap_L",
                     "log_jac_L", "log_jac_norm_L"):
            estimate = getattr(self, name)
            exponents |= {name: finite_or_none(estimate.mean), f"{name}_stderr": finite_or_none(estimate.stderr),
                          f"{name}_per_seed": [finite_or_none(v) for v in estimate.per_seed]}
        return {
            **exponents, "phase": self.phase, "gradients": self.gradients,
            "verdict": verdict(self), "model": self.description, "blocks": self.block_path,
            "depth": self.depth, "width": self.width, "n_tokens": self.n_tokens,
            "seeds": list(self.seeds), "burn_in": self.burn_in, "warnings": list(self.warnings),
            "family": self.family, "token": self.nouns.token, "layer": self.nouns.layer,
            "tokens_are": self.nouns.definition,
            "tokens_per_layer": list(self.tokens_per_layer),
            "width_per_layer": list(self.widths_per_layer),
            "layers": layers,
        }


def measure_diagnosis(
    source: ModelSource,
    *,
    n_tokens: int = 16,
    seeds: int | Sequence[int] = (0, 1, 2, 3),
    seed: int = 0,
    n_probes: int = 4,
    burn_in: int | None = None,
    device: str | torch.device = "cpu",
    prepare: Callable[[nn.Module], None] | None = None,
) -> Diagnosis:
    """Measure the per-layer geometry, Jacobian norm and both exponents of the model of
    ``source`` at initialization (``sigprop.diagnose`` is the public face: it names the model).

    ``seeds``: how many seeds (from ``seed``), or the seeds themselves. Each seed builds a fresh
    model (``source.probe_model``: ``torch.manual_seed(seed)`` first, the caller's random state
    restored after, float64, eval mode) and draws its own inputs and probes from
    ``stream_seed(seed, ...)``. ``device``: where the models run ("auto", "cpu", "cuda"; the
    inputs and probes are drawn on the CPU and moved, so a seed measures the same network
    everywhere). ``prepare(model)``, when given, changes each freshly built model in place
    before it is measured (e.g. ``sigprop.apply_init``). Raises ``DiagnoseError``.
    """
    device = resolve_device(device)
    seeds = seed_list(seeds, seed)
    _check_count("n_tokens", n_tokens, 2)
    _check_count("n_probes", n_probes, 1)
    runs = [_diagnose_seed(source, s, n_tokens, n_probes, device, prepare) for s in seeds]
    depth, path, d = runs[0]["depth"], runs[0]["path"], runs[0]["width"]
    if any(r["depth"] != depth for r in runs):
        raise DiagnoseError(f"the factory built models of different depths: "
                            f"{sorted({r['depth'] for r in runs})}")
    burn_in = depth // 2 if burn_in is None else burn_in
    if not 0 <= burn_in < depth:
        raise DiagnoseError(f"burn_in must be in [0, depth - 1] = [0, {depth - 1}]; got {burn_in}")
    layers = {name: np.stack([r[name] for r in runs]) for name in LAYER_FIELDS}
    slope = {name: (layers[name][:, depth] - layers[name][:, burn_in]) / (depth - burn_in)
             for name in ("log_jac", "log_spread")}
    return Diagnosis(
        description=(runs[0]["wrapped"] or source.description
                     or getattr(source.factory, "description", None)
                     or f"{runs[0]['model']} (blocks: {path or 'the model itself'})"),
        block_path=path, depth=depth, width=d, n_tokens=runs[0]["tokens"][0],
        seeds=tuple(int(s) for s in seeds), burn_in=burn_in, layers=layers,
        lambda_a=estimate(slope["log_spread"]), lambda_g=estimate(slope["log_jac"]),
        warnings=tuple(dict.fromkeys(w for r in runs for w in r["warnings"])),
        family=runs[0]["family"], tokens=tuple(runs[0]["tokens"]),
        widths=tuple(runs[0]["widths"]),
    )


def seed_list(seeds: int | Sequence[int], seed: int = 0) -> tuple[int, ...]:
    """``seeds`` seeds from ``seed`` (an integer count), or the given seeds, checked."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        _check_count("seeds", seeds, 1)
        _check_count("seed", seed, 0)
        seeds = range(seed, seed + int(seeds))
    seeds = tuple(int(s) for s in seeds)
    check_seeds(seeds)
    return seeds


def verdict(diagnosis: Diagnosis, depth: int | None = None) -> str:
    """Plain-language phase and gradient regime, and by how much.

    The totals are log D_L (growth of 1 − ρ near collapse) and log_jac_L as measured over the
    model's L layers, or, for another ``depth``, λ · depth (the late-layer rate extrapolated).
    The words are those of ``sigprop.theory.regimes``: a total beyond ±``EDGE`` (a factor
    e^0.5 ≈ 1.6 over the network) is ordered or chaotic, vanishing or exploding; anything else
    is near the edge. The last layer's 1 − ρ_L (collapsed below ``COLLAPSED``) is quoted too.
    Totals, not rates, decide: in pre-LN models the early layers do most of the change.
    """
    own = depth is None or depth == diagnosis.depth
    depth = diagnosis.depth if depth is None else depth
    a, g, b = diagnosis.lambda_a, diagnosis.lambda_g, diagnosis.burn_in
    words = _WORDS[diagnosis.family]
    if own:
        total_a, total_g = diagnosis.mean("log_spread")[-1], diagnosis.mean("log_jac")[-1]
        how = f"over the {depth} {words['layers']}"
    else:
        total_a, total_g = a.mean * depth, g.mean * depth
        how = f"over {depth} {words['layers']} (extrapolated at the late-layer rate)"
    per = words["per"]
    rate_a = f"λ_a = {a.mean:+.3f} ± {_se(a)} per {per} after {per} {b}"
    rate_g = f"λ_g = {g.mean:+.3f} ± {_se(g)} per {per} after {per} {b}"
    angle_word = str(angle_regime(_finite_or_nan(total_a)))
    if angle_word == "undefined":
        angle = f"λ_a could not be measured ({rate_a})."
    elif angle_word == "near the edge":
        side = "ordered" if total_a < 0 else "chaotic"
        angle = words["edge"].format(phase=side, factor=_factor(total_a), how=how, rate=rate_a)
    else:
        angle = words[angle_word].format(factor=_factor(total_a), how=how, rate=rate_a,
                                         scale=_scale(a.mean))
    one_minus_rho = diagnosis.mean("one_minus_rho")
    finite = np.flatnonzero(np.isfinite(one_minus_rho))
    if finite.size:
        last = int(finite[-1])
        rho_last = float(one_minus_rho[last])
        state = words["collapsed"] if rho_last < COLLAPSED else words["apart"]
        where = ("The forward pass ends at 1 − ρ_L" if last == len(one_minus_rho) - 1 else
                 f"The last layer with 2 or more {diagnosis.nouns.token}s, l = {last}, has 1 − ρ")
        angle += f" {where} = {rho_last:.2g}: {state}."
    gradient_word = str(gradient_regime(_finite_or_nan(total_g)))
    if gradient_word == "undefined":
        grad = f"λ_g could not be measured ({rate_g})."
    elif gradient_word != "near the edge":
        kind, change = gradient_word, ("grows" if total_g > 0 else "shrinks")
        reach = "are out of reach" if total_g < 0 else "come with unstable training"
        grad = words["gradients"].format(kind=kind, change=change, factor=_factor(total_g),
                                         how=how, rate=rate_g, scale=_scale(g.mean), reach=reach)
    else:
        grad = words["stable"].format(factor=_factor(total_g), how=how, rate=rate_g)
    return " ".join([angle, grad, *diagnosis.warnings])


_WORDS = {
    "transformer": dict(
        layers="layers", per="layer",
        ordered="Ordered phase (rank collapse): near collapse 1 − ρ shrinks by {factor} {how} "
                "({rate}).",
        chaotic="Chaotic phase: near collapse 1 − ρ grows by {factor} {how}, tokens repel "
                "({rate}).",
        edge="Near the edge of chaos ({phase} side): near collapse 1 − ρ changes by only "
             "{factor} {how} ({rate}).",
        collapsed="the tokens have collapsed", apart="the tokens stay apart",
        gradients="Gradients {kind}: ‖∂X_L/∂X_0‖²/(n d) {change} by {factor} {how} ({rate}).",
        stable="Gradients near the edge: ‖∂X_L/∂X_0‖²/(n d) changes by only "
               "{factor} {how} ({rate})."),
    "convolutional": dict(
        layers="residual blocks", per="block",
        ordered="Ordered phase: spatial positions become identical (loss of spatial "
                "information) — near that state their differences 1 − ρ shrink by {factor} "
                "{how}, an e-fold every {scale} blocks ({rate}).",
        chaotic="Chaotic phase: spatial positions are driven apart — near identical positions "
                "1 − ρ grows by {factor} {how} ({rate}).",
        edge="Near the edge of chaos ({phase} side): spatial positions neither merge nor "
             "scatter — near identical positions 1 − ρ changes by only {factor} {how} ({rate}).",
        collapsed="the spatial positions have become identical",
        apart="the spatial positions stay distinct",
        gradients="Gradients {kind} per block: the per-entry gradient gain "
                  "‖∂X_L/∂X_0‖²/numel(X_0) {change} by {factor} {how}, an e-fold every {scale} "
                  "blocks ({rate}).",
        stable="Gradients near the edge: the per-entry gradient gain "
               "‖∂X_L/∂X_0‖²/numel(X_0) changes by only {factor} {how} ({rate})."),
    "recurrent": dict(
        layers="time steps", per="step",
        ordered="Short memory (ordered): the network forgets its initial state within "
                "~1/|λ_a| ≈ {scale} steps — differences between initial states, 1 − ρ, shrink "
                "by {factor} {how} ({rate}).",
        chaotic="Chaotic: differences between initial states are amplified, 1 − ρ grows by "
                "{factor} {how}; the state keeps (and scrambles) where it started ({rate}).",
        edge="Near the edge of chaos ({phase} side): long memory of the initial state — "
             "1 − ρ changes by only {factor} {how} ({rate}).",
        collapsed="the network has forgotten its initial state",
        apart="the initial states are still told apart",
        gradients="Gradients through time {kind}: ‖∂h_T/∂h_0‖²/(n d) {change} by {factor} "
                  "{how}, an e-fold every ~1/|λ_g| ≈ {scale} steps ({rate}); long-range "
                  "dependencies {reach}.",
        stable="Gradients through time near the edge: ‖∂h_T/∂h_0‖²/(n d) changes "
               "by only {factor} {how} ({rate}); long-range memory is within reach."),
    "graph": dict(
        layers="message-passing layers", per="layer",
        ordered="Over-smoothing (ordered): node features become indistinguishable after "
                "~1/|λ_a| ≈ {scale} layers — near the smooth state 1 − ρ shrinks by {factor} "
                "{how} ({rate}).",
        chaotic="No over-smoothing (chaotic side): node features are driven apart, near the "
                "smooth state 1 − ρ grows by {factor} {how} ({rate}).",
        edge="Near the edge of over-smoothing ({phase} side): near the smooth state 1 − ρ "
             "changes by only {factor} {how} ({rate}).",
        collapsed="the node features have over-smoothed",
        apart="the node features stay distinguishable",
        gradients="Gradients {kind}: ‖∂X_L/∂X_0‖²/(n d) {change} by {factor} {how}, an e-fold "
                  "every {scale} layers ({rate}).",
        stable="Gradients near the edge: ‖∂X_L/∂X_0‖²/(n d) changes by only "
               "{factor} {how} ({rate})."),
}


def _scale(rate: float) -> str:
    """1/|rate|, the layers per e-fold: '12.5', or '∞'."""
    return "∞" if rate == 0 else f"{1 / abs(rate):.3g}"


def _diagnose_seed(source: ModelSource, seed: int, n_tokens: int, n_probes: int,
                   device: torch.device, prepare: Callable[[nn.Module], None] | None) -> dict:
    model = source.probe_model(seed, device)
    wrapped = None
    if type(model).__name__ == "Unrolled":
        wrapped = f"{model.rnn!r} unrolled over {source.steps} steps"
    if prepare is not None:
        prepare(model)
    probe = ModelProbe(model, seed, n_tokens=n_tokens, n_probes=n_probes, width=source.width,
                       block_path=source.block_path, run=source.run, family=source.family,
                       image_size=source.image_size)
    return {**probe.measure(), "depth": probe.depth, "path": probe.path,
            "model": type(model).__name__, "family": probe.family, "wrapped": wrapped}


def _check_count(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DiagnoseError(f"{name} must be an integer >= {low}; got {value!r}")


def _factor(log_factor: float) -> str:
    """e^x with its value: 'e^{9.1} ≈ 8.96e+03×', 'e^{-12.3} ≈ 1/2.2e+05', 'e^{0.04} ≈ 1.04×'."""
    exponent = f"{log_factor:.1f}" if abs(log_factor) >= 1 else f"{log_factor:.2f}"
    value = math.exp(min(abs(log_factor), 700.0))
    return f"e^{{{exponent}}} ≈ " + (f"{value:.3g}×" if log_factor >= 0 else f"1/{value:.3g}")


def _se(estimate: Estimate) -> str:
    return "?" if not math.isfinite(estimate.stderr) else f"{estimate.stderr:.3f}"


def _finite_or_nan(value: float) -> float:
    """NaN for ±∞ too: a total that overflowed has no word."""
    return value if math.isfinite(value) else math.nan
