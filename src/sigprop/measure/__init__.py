"""Probes of random networks: token geometry, Jacobian norms and empirical Lyapunov exponents.

One measurement path for all later work; every probe evaluates many seeds together (``vmap``
over stacked parameters) and is deterministic given the seeds.
"""

from sigprop.measure.collapse import angle_spread, collapsed_log_ratios, project_differences
from sigprop.measure.ensemble import StackedBlock, stacked_blocks, stream_seed
from sigprop.measure.lyapunov import (
    Estimate,
    empirical_lambda_a,
    empirical_lambda_a_points,
    empirical_lambda_g,
    lambda_g_from_log_jac,
)
from sigprop.measure.geometry import simplex_tokens, token_geometry
from sigprop.measure.trajectory import (
    Trajectory,
    measure_points,
    measure_trajectory,
    propagate,
    sphere_probes,
)

__all__ = [
    "Estimate",
    "StackedBlock",
    "Trajectory",
    "angle_spread",
    "collapsed_log_ratios",
    "empirical_lambda_a",
    "empirical_lambda_a_points",
    "empirical_lambda_g",
    "lambda_g_from_log_jac",
    "measure_points",
    "measure_trajectory",
    "project_differences",
    "propagate",
    "simplex_tokens",
    "sphere_probes",
    "stacked_blocks",
    "stream_seed",
    "token_geometry",
]
