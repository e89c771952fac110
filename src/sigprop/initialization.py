"""The theory at one initialization: its exponents, and its layer-by-layer geometry.

``exponents`` gives the asymptotic Lyapunov exponents (per layer, at the forward map's fixed
point) and, at a depth L, the finite-depth ones; ``trajectory`` the predicted q_l, ρ_l and
log‖J_l‖² for l = 0..L. Both return small report objects whose ``to_json`` is what the command
line prints with ``--json`` and whose ``verdict`` says what the numbers mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sigprop.slices import Setting, finite_or_none
from sigprop.spec import Architecture, InvalidHyperparameter, depth_or
from sigprop.theory.causal import causal_trajectory, is_causal
from sigprop.theory.depth import depth_profile
from sigprop.theory.profile import DepthProfile
from sigprop.theory.dynamics import trajectory as predict_trajectory
from sigprop.theory.exponents import Exponents, compute_exponents, sign_label

VERDICT_DEPTH = 32  # depth the asymptotic rates are spelled out for when no depth is given
SIGNAL_FLOOR = 1e-9  # a norm fixed point below this is q* = 0: the signal dies out
MARGINAL = 0.05      # |L·λ_a| below this: differences neither shrink nor grow over the depth


@dataclass(frozen=True)
class ExponentsReport:
    """Asymptotic exponents (NaN where the norm has no fixed point) and, at ``profile.depth``
    when asked for or needed, the finite-depth profile."""

    arch: Architecture
    n_tokens: int
    asymptotic: Exponents
    profile: DepthProfile | None
    q0: float
    rho0: float

    @property
    def has_fixed_point(self) -> bool:
        return bool(np.isfinite(self.asymptotic.q_collapsed))

    def to_json(self) -> dict[str, Any]:
        """{"lambda_a", "lambda_g", "lambda_a_depth", "lambda_g_depth", "q_star", "rho_star",
        "q_collapsed", "phase", "gradients", "architecture", "hyperparameters",
        "finite_depth"}; the ``_depth`` exponents are λ^(L) (null without a depth), every
        undefined value is null."""
        e = self.asymptotic
        p = self.profile
        return {
            "lambda_a": finite_or_none(e.lambda_a),
            "lambda_g": finite_or_none(e.lambda_g),
            "lambda_a_depth": None if p is None else finite_or_none(p.lambda_a),
            "lambda_g_depth": None if p is None else finite_or_none(p.lambda_g),
            "q_star": finite_or_none(e.q_star),
            "rho_star": finite_or_none(e.rho_star),
            "q_collapsed": finite_or_none(e.q_collapsed),
            "phase": str(e.phase),
            "gradients": str(e.gradients),
            "architecture": self.arch.describe(),
            "hyperparameters": {**self.arch.resolved().scalars(), "n_tokens": self.n_tokens},
            "finite_depth": None if self.profile is None else self._finite_depth(),
        }

    def _finite_depth(self) -> dict[str, Any]:
        p = self.profile
        return {
            "depth": p.depth, "q0": self.q0, "rho0": self.rho0,
            "definition": ("ρ0 → 1: nearly collapsed inputs, linearized" if self.rho0 >= 1.0
                           else f"from ρ0 = {self.rho0:g}"),
            "q_L": float(p.q[-1]), "rho_L": float(p.rho[-1]), "log_jac_L": float(p.log_jac[-1]),
            "lambda_a": finite_or_none(p.lambda_a), "lambda_g": finite_or_none(p.lambda_g),
            "lambda_a_local": finite_or_none(p.local_lambda_a[-1]),
            "lambda_g_local": finite_or_none(p.local_lambda_g[-1]),
            "phase": str(sign_label(p.lambda_a, "ordered", "chaotic")),
            "gradients": str(sign_label(p.lambda_g, "vanishing", "exploding")),
        }

    def verdict(self) -> str:
        """What the exponents mean over the network's depth, in one or two sentences."""
        if self.profile is not None:
            p = self.profile
            text = _spelled_out(float(p.lambda_a), float(p.lambda_g), p.depth,
                                self.arch["network"])
            if not self.has_fixed_point:
                text = ("No norm fixed point: q grows with depth (to q_L = "
                        f"{float(p.q[-1]):.3g} at L = {p.depth}), so the rates change from layer "
                        f"to layer; over the L layers from q0 = {self.q0:g}, "
                        + ("ρ0 → 1 (nearly collapsed inputs): " if self.rho0 >= 1.0
                           else f"ρ0 = {self.rho0:g}: ")
                        + text)
            return text
        e = self.asymptotic
        if self.signal_dies:
            return (f"The signal dies out: the norm's fixed point is q* = 0 (no bias). Distances "
                    f"between inputs shrink with the norm, by e^{float(e.lambda_a) * VERDICT_DEPTH:.1f}"
                    f" over {VERDICT_DEPTH} layers (λ_a = log χ_1 here is the decay rate of q − p), "
                    "while their angles change only slowly; ‖∂X_L/∂X_0‖² changes by "
                    f"e^{float(e.lambda_g) * VERDICT_DEPTH:.1f} over {VERDICT_DEPTH} layers.")
        return _spelled_out(float(e.lambda_a), float(e.lambda_g), VERDICT_DEPTH,
                            self.arch["network"])

    @property
    def signal_dies(self) -> bool:
        """Whether the asymptotic state is q* = 0 (a bias-free network whose norm shrinks)."""
        q = self.asymptotic.q_collapsed if self.asymptotic is not None else np.nan
        return bool(np.all(np.asarray(q) < SIGNAL_FLOOR))


def exponents(
    arch: Architecture | str | None = None,
    *,
    n_tokens: int = 16,
    depth: int | None = None,
    q0: float = 1.0,
    rho0: float = 1.0,
    **values: Any,
) -> ExponentsReport:
    """λ_a, λ_g and the attracting state (q*, ρ*) of the wide-limit theory at one
    initialization, with no arguments at the reference transformer's defaults.

    ``arch``: a preset name (reference, pre-ln, post-ln, gpt2, llama, bert), a .json description
    file or an ``Architecture``; ``values``: any declared hyperparameter or option
    (``sigma_w=1.5``, ``alpha=0.3``, ``norm="layer"``, ``heads=4`` …). With ``depth`` L, or
    when the block has no norm fixed point (unit residuals: the asymptotic exponents are then
    undefined and L defaults to the architecture's depth), the report adds the finite-depth
    state q_L, ρ_L, log‖J_L‖² from (q0, ρ0), λ_a^(L) = (1/L) log((1 − ρ_L)/(1 − ρ0)),
    λ_g^(L) = (1/L) log(‖J_L‖_F²/(n d)) and the local rates at layer L. The default ρ0 = 1 is the
    limit of nearly collapsed inputs, where λ_a^(L) = 0 is the edge of chaos (from ρ0 far from
    1, λ_a^(L) measures relaxation towards the attractor instead). Raises
    ``InvalidHyperparameter``.
    """
    block = Architecture.load(arch).with_values(**values)
    setting = Setting(n_tokens, depth, q0, rho0)  # validates them
    n_tokens, depth, q0, rho0 = setting.n_tokens, setting.depth, setting.q0, setting.rho0
    layer = block.theory_layer(depth)
    asymptotic = compute_exponents(layer, n_tokens)
    profile = None
    if depth is None and not np.isfinite(asymptotic.q_collapsed):
        depth = block.depth
        if depth is None:
            raise InvalidHyperparameter("this block has no norm fixed point (q grows without "
                                        "bound), so its exponents depend on the depth: give a "
                                        "depth (--depth L)")
    if depth is not None:
        profile = depth_profile(layer, n_tokens, depth, q0, rho0)
    return ExponentsReport(block.resolved(depth), n_tokens, asymptotic, profile, q0, rho0)


@dataclass(frozen=True)
class TrajectoryReport:
    """q_l, p_l, ρ_l and log_jac_l for l = 0..L (l = 0 the input); for causal attention the
    position averages, with ``q_i`` and ``log_jac_i`` per position i (shape (L + 1, n))."""

    arch: Architecture
    n_tokens: int
    q: np.ndarray
    p: np.ndarray
    rho: np.ndarray
    log_jac: np.ndarray
    q_i: np.ndarray | None = None
    log_jac_i: np.ndarray | None = None

    @property
    def depth(self) -> int:
        return self.q.shape[0] - 1

    def layers(self) -> list[dict[str, Any]]:
        """[{"l", "q", "p", "rho", "log_jac"}, …], causal: with "q_i" and "log_jac_i" lists."""
        rows = [{"l": l, "q": float(self.q[l]), "p": float(self.p[l]), "rho": float(self.rho[l]),
                 "log_jac": float(self.log_jac[l])} for l in range(self.depth + 1)]
        if self.q_i is not None:
            for l, row in enumerate(rows):
                row["q_i"] = self.q_i[l].tolist()
                row["log_jac_i"] = self.log_jac_i[l].tolist()
        return rows

    def to_json(self) -> dict[str, Any]:
        return {"layers": self.layers(), "architecture": self.arch.describe(),
                "hyperparameters": {**self.arch.scalars(), "n_tokens": self.n_tokens}}


def trajectory(
    arch: Architecture | str | None = None,
    *,
    depth: int | None = None,
    n_tokens: int = 16,
    q0: float = 1.0,
    rho0: float = 0.0,
    **values: Any,
) -> TrajectoryReport:
    """Predicted q_l, ρ_l and log(‖∂X_l/∂X_0‖_F² / (n d)) for l = 0..L from input tokens with
    squared norm ``q0`` and cosine ``rho0``. ``depth`` defaults to the architecture's depth,
    else 32. With causal attention (``causal=True``) the full n×n Gram matrices are propagated
    (``sigprop.theory.causal``; a few seconds per 24 layers) and the report adds per-position
    values. Other arguments as in ``exponents``."""
    block = Architecture.load(arch).with_values(**values)
    setting = Setting(n_tokens, depth_or(block, depth, 32), q0, rho0)  # validates them
    n_tokens, depth, q0, rho0 = setting.n_tokens, setting.depth, setting.q0, setting.rho0
    layer = block.theory_layer(depth)
    if is_causal(layer):
        path = causal_trajectory(layer, n_tokens, q0, rho0, depth)
        return TrajectoryReport(block.resolved(depth), n_tokens, path.q, path.p, path.rho,
                                path.log_jac, path.q_i, path.log_jac_i)
    path = predict_trajectory(layer, n_tokens, q0, rho0, depth)
    return TrajectoryReport(block.resolved(depth), n_tokens, path.q, path.p, path.rho,
                            path.log_jac)


def _spelled_out(lam_a: float, lam_g: float, depth: int, network: str = "transformer") -> str:
    """One sentence on what per-layer rates mean for a network of ``depth`` layers; an MLP's
    "tokens" are the inputs of a batch, which converge (ordered phase) rather than collapse
    in rank through attention."""
    if math.isnan(lam_a) or math.isnan(lam_g):
        return "The exponents are undefined here."
    total_a = lam_a * depth
    what, collapse = (("token differences", "rank collapse") if network == "transformer" else
                      ("differences between inputs", "ordered: distinct inputs converge"))
    if abs(total_a) < MARGINAL:
        angle = f"{what} neither shrink nor grow over {depth} layers (marginal)"
    else:
        angle = (f"{what} shrink by e^{total_a:.1f} over {depth} layers ({collapse})"
                 if lam_a < 0 else
                 f"{what} grow by e^{total_a:.1f} over {depth} layers (chaos)")
    gradient = f"‖∂X_L/∂X_0‖² changes by e^{lam_g * depth:.1f} over {depth} layers"
    return f"{angle}; {gradient}."
