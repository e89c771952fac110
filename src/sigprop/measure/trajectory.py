"""Per-layer token geometry and end-to-end Jacobian norm of random networks, many seeds at once.

log_jac_l = log(‖∂X_l/∂X_0‖_F² / (n d)) (docs/theory.md §3) is estimated with probes v drawn uniformly
on the sphere |v|² = n d. Then E[v vᵀ] = I, so E‖J v‖² = ‖J‖_F² exactly (an unbiased
Hutchinson estimate with a lower variance than Gaussian probes), and log_jac_0 = 0 to rounding.
The log of the probe mean is a consistent estimate of log_jac (Jensen bias O(1/n_probes)).

The tangents T_l = J_l v of all layers come from one forward-mode pass (``torch.func.jvp``,
block by block). Each layer the tangents are rescaled to |T|² = n d and the log of the scale is
accumulated, so nothing overflows at large depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from sigprop.spec.components import Serial
from sigprop.measure.ensemble import StackedBlock, member_passes, stream_seed
from sigprop.measure.geometry import simplex_tokens, token_geometry


@dataclass(frozen=True)
class Trajectory:
    """Arrays over (seed, layer l = 0..L), l = 0 being the input; ``measure_points`` adds a
    leading axis over hyperparameter points.

    ``one_minus_rho`` is 1 − ρ computed from the token spread, accurate near collapse.
    """

    q: np.ndarray
    p: np.ndarray
    rho: np.ndarray
    one_minus_rho: np.ndarray
    log_jac: np.ndarray


def measure_trajectory(
    layer: Serial,
    *,
    depth: int,
    width: int,
    n_tokens: int,
    q0: float,
    rho0: float,
    seeds: Sequence[int],
    n_probes: int = 4,
    device: torch.device | str = "cpu",
) -> Trajectory:
    """Geometry and log_jac of ``build_network(layer, depth, width, seed=s)``.

    Inputs are ``simplex_tokens(n_tokens, width, q0, rho0)`` (geometry exactly (q0, ρ0)), with
    a random orientation per seed; all seeds are evaluated together. Deterministic given seeds,
    and seed s gives the same row whatever other seeds are evaluated with it.
    """
    points = measure_points(
        [layer], depth=depth, width=width, n_tokens=n_tokens, q0=q0, rho0=rho0, seeds=seeds,
        n_probes=n_probes, device=device,
    )
    return Trajectory(**{k: v[0] for k, v in vars(points).items()})


def measure_points(
    layers: Sequence[Serial],
    *,
    depth: int,
    width: int,
    n_tokens: int,
    q0: float,
    rho0: float,
    seeds: Sequence[int],
    n_probes: int = 4,
    batch: int = 64,
    on_layer: Callable[[], None] | None = None,
    device: torch.device | str = "cpu",
) -> Trajectory:
    """``measure_trajectory`` for many hyperparameter points at once: arrays of shape
    (points, seeds, L + 1).

    Every (point, seed) network is one member of a vmapped ensemble, ``batch`` members per
    pass; the layers must share their structure and activation. Seed s uses the same inputs
    and probes at every point (common random numbers), and the results do not depend on
    ``batch``. ``on_layer`` is called after every layer of every pass (progress reporting).
    Networks, inputs and probes are drawn on the CPU and run on ``device``.
    """
    if n_tokens < 2:
        raise ValueError(f"n_tokens must be >= 2 for the off-diagonal geometry p; got {n_tokens}")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1; got {n_probes}")
    parts = []
    for chunk_seeds, blocks in member_passes(layers, seeds, depth=depth, width=width,
                                             batch=batch, on_layer=on_layer, device=device):
        x0 = torch.stack(
            [simplex_tokens(n_tokens, width, q0, rho0, seed=stream_seed(s, "input tokens"))
             for s in chunk_seeds]
        ).to(device)
        probes = torch.stack(
            [sphere_probes(n_probes, n_tokens, width, seed=stream_seed(s, "probes"))
             for s in chunk_seeds]
        ).to(device)
        parts.append(propagate(blocks, x0, probes))
    shape = (len(layers), len(seeds), depth + 1)
    return Trajectory(
        **{key: np.concatenate([vars(p)[key] for p in parts]).reshape(shape) for key in vars(parts[0])}
    )


def propagate(blocks: Iterable[StackedBlock], x0: Tensor, probes: Tensor) -> Trajectory:
    """Push inputs ``x0`` ``(S, n, d)`` and probes ``(S, P, n, d)`` through ``blocks``.

    The probes are used as given: log_jac_l = log(mean_P |T_l|² / (n d)) is unbiased for
    log(‖J_l‖_F² / (n d)) only when E[v vᵀ] = I, as for ``sphere_probes``.
    """
    n, d = x0.shape[-2:]
    x, tangents = x0, probes
    log_scale = _log_sq_norm(tangents, n * d)
    tangents = _rescale(tangents, log_scale)
    geometry, log_jac = [token_geometry(x)], [_log_mean_exp(log_scale)]
    for block in blocks:
        x, tangents = block.jvp(x, tangents)
        step = _log_sq_norm(tangents, n * d)
        tangents = _rescale(tangents, step)
        log_scale = log_scale + step
        geometry.append(token_geometry(x))
        log_jac.append(_log_mean_exp(log_scale))
    return Trajectory(
        **{key: _by_layer([g[key] for g in geometry]) for key in geometry[0]},
        log_jac=_by_layer(log_jac),
    )


def sphere_probes(
    n_probes: int, n: int, width: int, *, seed: int, dtype: torch.dtype = torch.float64
) -> Tensor:
    """``(n_probes, n, width)`` probes uniform on the sphere |v|² = n d, so E[v vᵀ] = I."""
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(n_probes, n, width, generator=generator, dtype=dtype)
    return _rescale(gaussian, _log_sq_norm(gaussian, n * width))


def _log_sq_norm(tangents: Tensor, size: int) -> Tensor:
    """log(|T|² / size) over the last two dims."""
    return torch.log(tangents.square().sum((-2, -1)) / size)


def _rescale(tangents: Tensor, log_sq_norm: Tensor) -> Tensor:
    """Tangents divided by exp(log_sq_norm / 2); a tangent that underflowed to 0 stays 0."""
    factor = torch.where(torch.isfinite(log_sq_norm), torch.exp(-0.5 * log_sq_norm), 0.0)
    return tangents * factor[..., None, None]


def _log_mean_exp(values: Tensor) -> Tensor:
    return torch.logsumexp(values, dim=-1) - math.log(values.shape[-1])


def _by_layer(per_layer: list[Tensor]) -> np.ndarray:
    return torch.stack(per_layer, dim=-1).cpu().numpy()
