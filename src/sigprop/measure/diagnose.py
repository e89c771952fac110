"""Empirical signal propagation of any ``torch.nn.Module`` built of a sequence of blocks.

Per layer l = 0..L (l = 0 the hidden states entering block 0), mean ± standard error over seeds:

* q, p, ρ, 1 − ρ of C = X Xᵀ / d (``token_geometry``, docs/theory.md §1);
* ``effective_rank`` of C: exp of the Shannon entropy of its eigenvalues normalized to sum 1
  (Roy & Vetterli 2007), from 1 (collapsed tokens) to n (orthogonal tokens of equal norm);
* ``cos_min``, ``cos_max``: the smallest and largest cosine between two distinct tokens;
* ``log_jac`` = log(‖∂X_l/∂X_0‖_F² / (n d)) from ``n_probes`` probes on the sphere |v|² = n d
  (``sphere_probes``: unbiased for ‖J‖_F², as in ``trajectory.py``), one jvp pass per probe;
* ``log_spread`` = log D_l near collapse (``collapse.py``), D_0 = 1.

Exponents per seed, both the mean per-layer growth after ``burn_in`` layers (default L // 2, so
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
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from sigprop.measure.blocks import BlockFunction, DiagnoseError, Run, default_run, find_blocks
from sigprop.measure.collapse import angle_spread, project_differences
from sigprop.measure.ensemble import check_seeds, stream_seed
from sigprop.measure.exponents import Estimate, _estimate
from sigprop.measure.factories import hf_factory, load_factory
from sigprop.measure.geometry import simplex_tokens, token_geometry
from sigprop.measure.trajectory import sphere_probes

LAYER_FIELDS = ("q", "p", "rho", "one_minus_rho", "effective_rank", "cos_min", "cos_max",
                "log_jac", "log_spread")
DEEP = 3.0          # |λ| L above this (a factor e³ ≈ 20 over the network) is deep in a regime
COLLAPSED = 1e-3    # 1 − ρ_L below this: the tokens have collapsed (docs/theory.md §8)
PRECISION = 1e-12   # |P T| / |T| below this: token differences drown in rounding
DRIFT = 1e-6        # 1 − ρ of the collapsed state above this: no longer collapsed


@dataclass(frozen=True)
class Diagnosis:
    """Per-layer arrays ``layers[name]`` of shape (seeds, L + 1), names ``LAYER_FIELDS``;
    λ_a and λ_g as ``Estimate`` (mean, stderr, per seed)."""

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

    @property
    def phase(self) -> str:
        """"ordered" (λ_a < 0: tokens collapse) or "chaotic" (λ_a ≥ 0), as ``Exponents.phase``;
        "unknown" when λ_a could not be measured."""
        if not math.isfinite(self.lambda_a.mean):
            return "unknown"
        return "ordered" if self.lambda_a.mean < 0 else "chaotic"

    @property
    def gradients(self) -> str:
        """"vanishing" (λ_g < 0) or "exploding" (λ_g ≥ 0), as ``Exponents.gradients``;
        "unknown" when λ_g could not be measured."""
        if not math.isfinite(self.lambda_g.mean):
            return "unknown"
        return "vanishing" if self.lambda_g.mean < 0 else "exploding"

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
            {"l": l, **{name: _json(means[name][l]) for name in LAYER_FIELDS},
             **{f"{name}_stderr": _json(stderrs[name][l]) for name in LAYER_FIELDS}}
            for l in range(self.depth + 1)
        ]
        exponents = {}
        for name in ("lambda_a", "lambda_g"):
            estimate = getattr(self, name)
            exponents |= {name: _json(estimate.mean), f"{name}_stderr": _json(estimate.stderr),
                          f"{name}_per_seed": [_json(v) for v in estimate.per_seed]}
        return {
            **exponents, "phase": self.phase, "gradients": self.gradients,
            "verdict": verdict(self), "model": self.description, "blocks": self.block_path,
            "depth": self.depth, "width": self.width, "n_tokens": self.n_tokens,
            "seeds": list(self.seeds), "burn_in": self.burn_in, "warnings": list(self.warnings),
            "layers": layers,
        }


def diagnose(
    model: Callable[[int], nn.Module] | str | None = None,
    *,
    hf: str | None = None,
    layers: int = 24,
    heads: int | None = None,
    n_tokens: int = 16,
    seeds: int | Sequence[int] = (0, 1, 2, 3),
    seed: int = 0,
    n_probes: int = 4,
    burn_in: int | None = None,
    width: int | None = None,
    block_path: str | None = None,
    run: Run | None = None,
    description: str | None = None,
) -> Diagnosis:
    """Measure the per-layer geometry, Jacobian norm and both exponents of any PyTorch model
    built of a sequence of blocks, at initialization.

    ``model``: a factory ``factory(seed) -> nn.Module`` or its name ``"module.path:factory"``;
    or ``hf``: a Hugging Face family (gpt2, bert, llama) built from its config with ``layers``
    blocks, width ``width`` (default 256) and ``heads`` heads, randomly initialized, nothing
    downloaded. ``seeds``: how many seeds (from ``seed``), or the seeds themselves. Each seed
    builds a fresh model (``torch.manual_seed(seed)`` first, the caller's random state restored
    after), in float64 and eval mode, and draws its own inputs and probes from
    ``stream_seed(seed, ...)``. ``run`` drives the model (``blocks.default_run`` when None);
    ``width``, when given for your own model, must be its hidden size. Raises
    ``DiagnoseError``.
    """
    if (model is None) == (hf is None):
        raise DiagnoseError("give either a model factory 'module.path:factory' or --hf FAMILY")
    if hf is not None:
        factory, run = hf_factory(hf, layers, 256 if width is None else width, heads)
        width = None  # the Hugging Face model is built at this width
    else:
        factory = load_factory(model) if isinstance(model, str) else model
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        _check_count("seeds", seeds, 1)
        _check_count("seed", seed, 0)
        seeds = tuple(range(seed, seed + seeds))
    _check_count("n_tokens", n_tokens, 2)
    _check_count("n_probes", n_probes, 1)
    check_seeds(seeds)
    runs = [_diagnose_seed(factory, int(s), n_tokens, n_probes, width, block_path, run)
            for s in seeds]
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
        description=(description or getattr(factory, "description", None)
                     or f"{runs[0]['model']} (blocks: {path or 'the model itself'})"),
        block_path=path, depth=depth, width=d, n_tokens=n_tokens,
        seeds=tuple(int(s) for s in seeds), burn_in=burn_in, layers=layers,
        lambda_a=_estimate(slope["log_spread"]), lambda_g=_estimate(slope["log_jac"]),
        warnings=tuple(dict.fromkeys(w for r in runs for w in r["warnings"])),
    )


def verdict(diagnosis: Diagnosis, depth: int | None = None) -> str:
    """Plain-language phase and gradient regime, and by how much.

    The totals are log D_L (growth of 1 − ρ near collapse) and log_jac_L as measured over the
    model's L layers, or, for another ``depth``, λ · depth (the late-layer rate extrapolated).
    A total beyond ±``DEEP`` (a factor e³ ≈ 20) is deep in the phase that λ_a's sign names
    (gradients: in the direction of the total); anything else is near the edge. The last
    layer's 1 − ρ_L (collapsed below ``COLLAPSED``) is quoted too. Totals, not rates, decide:
    in pre-LN models the early layers do most of the change.
    """
    own = depth is None or depth == diagnosis.depth
    depth = diagnosis.depth if depth is None else depth
    a, g, b = diagnosis.lambda_a, diagnosis.lambda_g, diagnosis.burn_in
    if own:
        total_a, total_g = diagnosis.mean("log_spread")[-1], diagnosis.mean("log_jac")[-1]
        how = f"over the {depth} layers"
    else:
        total_a, total_g = a.mean * depth, g.mean * depth
        how = f"over {depth} layers (extrapolated at the late-layer rate)"
    rate_a = f"λ_a = {a.mean:+.3f} ± {_se(a)} per layer after layer {b}"
    rate_g = f"λ_g = {g.mean:+.3f} ± {_se(g)} per layer after layer {b}"
    if not (math.isfinite(a.mean) and math.isfinite(total_a)):
        angle = f"λ_a could not be measured ({rate_a})."
    elif total_a < -DEEP and a.mean < 0:
        angle = (f"Ordered phase, deep in the collapsed regime: near collapse 1 − ρ shrinks by "
                 f"{_factor(total_a)} {how} ({rate_a}).")
    elif total_a > DEEP and a.mean >= 0:
        angle = (f"Chaotic phase, deep: near collapse 1 − ρ grows by {_factor(total_a)} {how}, "
                 f"tokens repel ({rate_a}).")
    else:
        angle = (f"Near the edge of chaos ({diagnosis.phase} side): near collapse 1 − ρ changes "
                 f"by only {_factor(total_a)} {how} ({rate_a}).")
    rho_last = float(diagnosis.mean("one_minus_rho")[-1])
    state = "the tokens have collapsed" if rho_last < COLLAPSED else "the tokens stay apart"
    angle += f" The forward pass ends at 1 − ρ_L = {rho_last:.2g}: {state}."
    if not math.isfinite(total_g):
        grad = f"λ_g could not be measured ({rate_g})."
    elif abs(total_g) > DEEP:
        kind, change = ("explode", "grows") if total_g > 0 else ("vanish", "shrinks")
        grad = (f"Gradients {kind}: ‖∂X_L/∂X_0‖²/(n d) {change} by {_factor(total_g)} {how} "
                f"({rate_g}).")
    else:
        grad = (f"Gradients near the edge of stability: ‖∂X_L/∂X_0‖²/(n d) changes by only "
                f"{_factor(total_g)} {how} ({rate_g}).")
    return " ".join([angle, grad, *diagnosis.warnings])


def _diagnose_seed(factory, seed, n_tokens, n_probes, width, block_path, run) -> dict:
    model = _build(factory, seed)
    path, blocks = find_blocks(model, block_path)
    runner = run if run is not None else default_run(model, blocks, width)
    with BlockFunction(model, blocks, runner, n_tokens=n_tokens, seed=seed) as function:
        x0 = function.natural_input()
        if width is not None and x0.shape[-1] != width:
            raise DiagnoseError(f"width {width} does not match the model: its blocks receive "
                                f"hidden states of width {x0.shape[-1]}")
        if x0.ndim < 2 or x0.shape[-2] != n_tokens:
            raise DiagnoseError(f"block 0 received hidden states of shape {tuple(x0.shape)}; "
                                f"expected (..., n_tokens = {n_tokens}, width)")
        warnings: list[str] = []
        forward = _forward_layers(function, x0, seed, n_probes, warnings)
        log_spread = _collapsed_log_spread(function, x0, seed, warnings)
    return {**forward, "log_spread": log_spread, "depth": len(blocks), "path": path,
            "width": x0.shape[-1], "model": type(model).__name__, "warnings": warnings}


def _build(factory: Callable[[int], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(seed)
    if not isinstance(model, nn.Module):
        raise DiagnoseError(f"the factory returned a {type(model).__name__}, not a torch.nn.Module")
    config = getattr(model, "config", None)
    if hasattr(config, "use_cache"):
        config.use_cache = False  # no key/value cache: one pass, nothing kept
    return model.to(torch.float64).eval().requires_grad_(False)


def _forward_layers(function: BlockFunction, x0: Tensor, seed: int, n_probes: int,
                    warnings: list[str]) -> dict[str, np.ndarray]:
    """Geometry of the model's own forward pass and log_jac from ``n_probes`` jvp passes."""
    width = x0.shape[-1]
    probes = sphere_probes(n_probes, x0.numel() // width, width, seed=stream_seed(seed, "probes"))
    sq_norms = []
    for k, probe in enumerate(probes.reshape(n_probes, *x0.shape)):
        states, tangents = function.propagate(x0, probe)
        if k == 0:
            geometry = [_geometry(x) for x in states]
        sq_norms.append(torch.stack([t.square().sum() for t in tangents]))
    log_jac = torch.log(torch.stack(sq_norms).mean(0) / x0.numel()).numpy()
    if not np.all(np.isfinite(log_jac)):
        warnings.append("Warning: the Jacobian probes over- or underflowed float64 "
                        "(|log_jac| > 700); λ_g is not defined.")
    return {**{key: np.array([g[key] for g in geometry]) for key in geometry[0]},
            "log_jac": log_jac}


def _collapsed_log_spread(function: BlockFunction, x0: Tensor, seed: int,
                          warnings: list[str]) -> np.ndarray:
    """log D_l, l = 0..L, for a token difference around the collapsed state 1 xᵀ, D_0 = 1."""
    width = x0.shape[-1]
    q_in = float(token_geometry(x0)["q"].mean())
    x = math.sqrt(q_in) * simplex_tokens(1, width, 1.0, 0.0, seed=stream_seed(seed, "collapsed"),
                                         dtype=x0.dtype)
    collapsed = x.expand_as(x0).contiguous()  # make_dual rejects overlapping memory
    generator = torch.Generator().manual_seed(stream_seed(seed, "difference"))
    tangent = project_differences(torch.randn(x0.shape, generator=generator, dtype=x0.dtype), x[0])
    tangent = tangent / torch.sqrt(angle_spread(tangent, x[0]).mean())
    states, tangents = function.propagate(collapsed, tangent)
    log_spread, lowest, drift = [], math.inf, 0.0
    for state, t in zip(states, tangents):
        token = state.mean(-2)
        differences = project_differences(t, token)
        log_spread.append(float(torch.log(angle_spread(differences, token).mean())))
        lowest = min(lowest, float(differences.norm() / t.norm()))
        drift = max(drift, float(token_geometry(state)["one_minus_rho"].max()))
    if not np.all(np.isfinite(log_spread)):
        warnings.append("Warning: near collapse the token differences over- or underflowed "
                        "float64 (|log D| > 700); λ_a is not defined.")
    if lowest < PRECISION:
        warnings.append(f"Warning: near collapse the token differences fell to {lowest:.1g} of the "
                        "tangent (rounding limits λ_a).")
    if drift > DRIFT:
        warnings.append(f"Warning: rounding pushed the collapsed state off the line (1 − ρ up to "
                        f"{drift:.1g}); λ_a was measured away from exact collapse.")
    return np.array(log_spread)


def _geometry(x: Tensor) -> dict[str, float]:
    """token_geometry plus effective rank and extreme pairwise cosines, averaged over batch."""
    summary = {key: float(value.mean()) for key, value in token_geometry(x).items()}
    gram = x @ x.mT / x.shape[-1]
    eigenvalues = torch.linalg.eigvalsh(gram).clamp(min=0.0)
    weights = eigenvalues / eigenvalues.sum(-1, keepdim=True)
    entropy = -torch.special.xlogy(weights, weights).sum(-1)
    norms = torch.sqrt(torch.diagonal(gram, dim1=-2, dim2=-1))
    cosine = gram / (norms[..., :, None] * norms[..., None, :])
    off_diagonal = ~torch.eye(x.shape[-2], dtype=torch.bool)
    summary["effective_rank"] = float(torch.exp(entropy).mean())
    summary["cos_min"] = float(cosine[..., off_diagonal].min(-1).values.mean())
    summary["cos_max"] = float(cosine[..., off_diagonal].max(-1).values.mean())
    return summary


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


def _json(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
