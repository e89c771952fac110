"""The exponents of a trained config at initialization, from the theory and measured on the LM.

The LM is causal; the theory columns stored with each trial are those of its block made
bidirectional (the paper's theory; ``sigprop.analysis.definitions`` adds the causal theory's
at analysis time). So each config gets both:

* theory (the config's block made bidirectional, wide limit, n tokens): the asymptotic λ_a and
  λ_g (``compute_exponents``; NaN for blocks without a norm fixed point), the finite-depth
  λ_a^(L), λ_g^(L) at the trained depth L of nearly collapsed inputs (q0 = 1, ρ0 → 1), and the
  state the maps predict at layer L from q0 = 1, ρ0 = 0 (the LM's embedding gives |x|² ≈ d and
  nearly orthogonal characters): log(1 − ρ_L) and log_jac_L = log(‖∂X_L/∂X_0‖_F² / (n d))
  (docs/theory.md §6);
* measured on the causal layers at the trained width (``sigprop.measure``, every config and
  seed one member of a vmapped ensemble, on ``settings.device``, drawn on the CPU): λ_a over layers L..2L of a 2L-layer network after the
  norm has settled, λ_g from log_jac over the second half of an L-layer network (the
  conventions of ``sigprop.api.simulate``), and the measured last-layer state at depth L.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from sigprop.measure import empirical_lambda_a_points, lambda_g_from_log_jac, measure_points
from sigprop.spec import HYPERPARAMETERS
from sigprop.theory.depth import depth_profile
from sigprop.theory.exponents import compute_exponents
from sigprop.train.model import lm_architecture, lm_layer
from sigprop.train.trainer import TrainSettings

PROBES = 2
DEFINITIONS = ("finite-depth", "asymptotic")  # of the exponents in ``depth_exponents``


def exponents_at_init(
    configs: list[dict],
    settings: TrainSettings,
    n_tokens: int = 16,
    seeds: int = 2,
    width: int | None = None,
) -> list[dict]:
    """Theory and measured exponents of each config (the seed of a config is not used: the
    measurement averages networks of seeds 0..seeds−1, the same for every config).

    ``width`` (default ``settings.width``) is the width of the measured networks. Returns per
    config: lambda_a_theory, lambda_g_theory (asymptotic), lambda_a_depth_theory,
    lambda_g_depth_theory (at the trained depth), log_gap_L_theory, log_jac_L_theory;
    lambda_a_measured, lambda_g_measured and their standard errors (``_se``, over seeds; NaN
    for one seed); log_gap_L_measured, log_jac_L_measured (means over seeds). λ_a is −∞ where a
    branch has no skip path (theory) or where token differences vanished (measured).
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1; got {seeds!r}")
    width = settings.width if width is None else width
    results: list[dict] = [{} for _ in configs]
    for indices in _by_structure(configs):
        group = [configs[i] for i in indices]
        theory = _theory(group, settings.depth, n_tokens)
        measured = _measured(group, settings.depth, width, n_tokens, list(range(seeds)),
                             settings.device)
        for j, index in enumerate(indices):
            results[index] = {**{k: float(v[j]) for k, v in theory.items()},
                              **{k: float(v[j]) for k, v in measured.items()}}
    return results


def theory_at_init(configs: list[dict], depth: int, n_tokens: int = 16) -> list[dict[str, float]]:
    """The theory columns of ``exponents_at_init`` alone, per config (no network is built or
    measured): lambda_a_theory, lambda_g_theory, lambda_a_depth_theory, lambda_g_depth_theory,
    log_gap_L_theory, log_jac_L_theory at the trained ``depth``. The same code computes them
    for the trials of a sweep, so a new config's values are comparable with theirs."""
    results: list[dict[str, float]] = [{} for _ in configs]
    for indices in _by_structure(configs):
        theory = _theory([configs[i] for i in indices], depth, n_tokens)
        for j, index in enumerate(indices):
            results[index] = {k: float(v[j]) for k, v in theory.items()}
    return results


def _by_structure(configs: list[dict]) -> list[list[int]]:
    """Indices of the configs grouped by structural options (one theory grid per group)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, config in enumerate(configs):
        groups[lm_architecture(config).structure].append(index)
    return list(groups.values())


def depth_exponents(configs: list[dict], depth: int, n_tokens: int = 16,
                    definition: str = "finite-depth") -> np.ndarray:
    """L·λ_a and L·λ_g of each config's bidirectional block at depth L = ``depth``, shape (N, 2),
    computed as the trial columns of ``exponents_at_init`` are (no network is built).

    ``definition`` "finite-depth": L·λ_a^(L) = log((1 − ρ_L)/(1 − ρ_0)) and
    L·λ_g^(L) = log(‖J_L‖_F²/(n d)) over the L layers from nearly collapsed inputs (q0 = 1,
    ρ0 → 1), the columns lambda_*_depth_theory times L; "asymptotic": L times the per-layer
    exponents at the norm fixed point (lambda_*_theory; NaN without a fixed point).
    """
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {', '.join(DEFINITIONS)}; got {definition!r}")
    result = np.empty((len(configs), 2))
    for indices in _by_structure(configs):
        layer = _theory_layer([configs[i] for i in indices])
        if definition == "asymptotic":
            e = compute_exponents(layer, n_tokens)
            a, g = e.lambda_a, e.lambda_g
        else:
            p = _collapsed_profile(layer, n_tokens, depth)
            a, g = p.lambda_a, p.lambda_g
        result[indices] = depth * np.column_stack([np.broadcast_to(a, len(indices)),
                                                   np.broadcast_to(g, len(indices))])
    return result


def _theory_layer(configs: list[dict]):
    """The configs' bidirectional blocks as one broadcast theory layer (one structure)."""
    blocks = [lm_architecture(c) for c in configs]
    columns = {h.name: np.array([b[h.name] for b in blocks], dtype=float) for h in HYPERPARAMETERS}
    return blocks[0].with_values(**columns, causal=False).theory_layer()


def _collapsed_profile(layer, n_tokens: int, depth: int):
    """The finite-depth profile of nearly collapsed inputs (q0 = 1, ρ0 → 1): λ^(L)."""
    return depth_profile(layer, n_tokens, depth, 1.0, 1.0)


def _theory(configs: list[dict], depth: int, n_tokens: int) -> dict[str, np.ndarray]:
    """Wide-limit theory of the bidirectional block, all configs as one broadcast grid."""
    layer = _theory_layer(configs)
    exponents = compute_exponents(layer, n_tokens)
    collapsed = _collapsed_profile(layer, n_tokens, depth)  # λ^(L): ρ0 → 1
    profile = depth_profile(layer, n_tokens, depth, 1.0, 0.0)  # the state at layer L
    with np.errstate(divide="ignore"):
        log_gap = np.log(np.maximum(1.0 - profile.rho[-1], 0.0))
    return {
        "lambda_a_theory": exponents.lambda_a,
        "lambda_g_theory": exponents.lambda_g,
        "lambda_a_depth_theory": collapsed.lambda_a,
        "lambda_g_depth_theory": collapsed.lambda_g,
        "log_gap_L_theory": log_gap,
        "log_jac_L_theory": profile.log_jac[-1],
    }


def _measured(configs: list[dict], depth: int, width: int, n_tokens: int, seeds: list[int],
              device: torch.device) -> dict[str, np.ndarray]:
    """Measured on the causal layers the LM is built from (``lm_layer``), on ``device`` (drawn
    on the CPU)."""
    layers = [lm_layer(c) for c in configs]
    path = measure_points(layers, depth=depth, width=width, n_tokens=n_tokens,
                          q0=1.0, rho0=0.0, seeds=seeds, n_probes=PROBES, device=device)
    burn_in = depth // 2 if depth > 1 else 0
    gradient = [lambda_g_from_log_jac(log_jac, burn_in) for log_jac in path.log_jac]
    angle = empirical_lambda_a_points(layers, depth=2 * depth, width=width,
                                      n_tokens=n_tokens, seeds=seeds, burn_in=depth,
                                      device=device)
    with np.errstate(divide="ignore"):
        log_gap = np.log(path.one_minus_rho[:, :, -1]).mean(axis=1)
    return {
        "lambda_a_measured": np.array([e.mean for e in angle]),
        "lambda_a_measured_se": np.array([e.stderr for e in angle]),
        "lambda_g_measured": np.array([e.mean for e in gradient]),
        "lambda_g_measured_se": np.array([e.stderr for e in gradient]),
        "log_gap_L_measured": log_gap,
        "log_jac_L_measured": path.log_jac[:, :, -1].mean(axis=1),
    }
