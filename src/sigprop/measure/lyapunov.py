"""Empirical Lyapunov exponents λ_a and λ_g (docs/theory.md §4), mean ± standard error over seeds.

Both are average per-layer growth rates after ``burn_in`` layers, so that the state has reached
its attracting geometry (λ_g) or the collapsed norm fixed point q* (λ_a):

    λ_a = mean over layers l > burn_in of log(D_l / D_{l−1})         (``collapse.py``)
    λ_g = (log_jac_L − log_jac_{burn_in}) / (L − burn_in)             (``trajectory.py``)

λ_g uses the endpoints, i.e. the mean of the per-layer increments of log_jac, the same
definition as λ_a; a least-squares slope would weight layers unequally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from sigprop.spec.components import Serial
from sigprop.measure.collapse import collapsed_log_ratios
from sigprop.measure.ensemble import member_passes, stream_seed
from sigprop.measure.geometry import simplex_tokens
from sigprop.measure.trajectory import measure_trajectory


@dataclass(frozen=True)
class Estimate:
    """Mean over seeds, its standard error (NaN for one seed) and the per-seed values."""

    mean: float
    stderr: float
    per_seed: np.ndarray


def empirical_lambda_a(
    layer: Serial,
    *,
    depth: int,
    width: int,
    n_tokens: int,
    seeds: Sequence[int],
    burn_in: int,
) -> Estimate:
    """Angle exponent: growth rate per layer of 1 − ρ for small token differences at collapse.

    The collapsed token starts at a random direction with |x|² = d; the difference tangent is
    Gaussian, then projected (token-mean zero, ⊥ x). All seeds are evaluated together.
    """
    return empirical_lambda_a_points(
        [layer], depth=depth, width=width, n_tokens=n_tokens, seeds=seeds, burn_in=burn_in,
    )[0]


def empirical_lambda_a_points(
    layers: Sequence[Serial],
    *,
    depth: int,
    width: int,
    n_tokens: int,
    seeds: Sequence[int],
    burn_in: int,
    batch: int = 64,
    on_layer: Callable[[], None] | None = None,
    device: torch.device | str = "cpu",
) -> list[Estimate]:
    """``empirical_lambda_a`` at many hyperparameter points, every (point, seed) network one
    member of a vmapped ensemble (``batch`` members per pass). Seed s starts from the same
    collapsed token and difference tangent at every point."""
    _check_burn_in(burn_in, depth)
    if n_tokens < 2:
        raise ValueError(f"n_tokens must be >= 2 to have token differences; got {n_tokens}")
    per_member = []
    for chunk_seeds, blocks in member_passes(layers, seeds, depth=depth, width=width,
                                             batch=batch, on_layer=on_layer, device=device):
        x0 = torch.stack([_collapsed_token(width, seed=stream_seed(s, "collapsed"))
                          for s in chunk_seeds]).to(device)
        t0 = torch.stack([_gaussian(n_tokens, width, seed=stream_seed(s, "difference"))
                          for s in chunk_seeds]).to(device)
        log_ratios = collapsed_log_ratios(blocks, x0, t0).cpu().numpy()
        per_member.append(log_ratios[:, burn_in:].mean(axis=1))
    rates = np.concatenate(per_member).reshape(len(layers), len(seeds))
    return [estimate(row) for row in rates]


def empirical_lambda_g(
    layer: Serial,
    *,
    depth: int,
    width: int,
    n_tokens: int,
    seeds: Sequence[int],
    burn_in: int,
    q0: float = 1.0,
    rho0: float = 0.0,
    n_probes: int = 4,
) -> Estimate:
    """Gradient exponent: growth rate per layer of log(‖∂X_l/∂X_0‖_F² / (n d)) after burn-in."""
    _check_burn_in(burn_in, depth)
    trajectory = measure_trajectory(
        layer,
        depth=depth,
        width=width,
        n_tokens=n_tokens,
        q0=q0,
        rho0=rho0,
        seeds=seeds,
        n_probes=n_probes,
    )
    return lambda_g_from_log_jac(trajectory.log_jac, burn_in)


def lambda_g_from_log_jac(log_jac: np.ndarray, burn_in: int) -> Estimate:
    """λ_g per seed (rows of ``log_jac``, shape (seeds, L + 1)): the mean increase of log_jac per
    layer after ``burn_in``."""
    depth = log_jac.shape[-1] - 1
    _check_burn_in(burn_in, depth)
    return estimate((log_jac[:, depth] - log_jac[:, burn_in]) / (depth - burn_in))


def estimate(per_seed: np.ndarray) -> Estimate:
    n = per_seed.size
    stderr = float(per_seed.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return Estimate(mean=float(per_seed.mean()), stderr=stderr, per_seed=per_seed)


def _check_burn_in(burn_in: int, depth: int) -> None:
    if not 0 <= burn_in < depth:
        raise ValueError(f"burn_in must be in [0, depth - 1] = [0, {depth - 1}]; got {burn_in}")


def _collapsed_token(width: int, *, seed: int) -> torch.Tensor:
    """A random direction with |x|² = d (the n = 1 case of ``simplex_tokens``)."""
    return simplex_tokens(1, width, 1.0, 0.0, seed=seed)[0]


def _gaussian(n: int, width: int, *, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, width, generator=generator, dtype=torch.float64)
