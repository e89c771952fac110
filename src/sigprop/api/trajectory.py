"""``sigprop.trajectory``: the theory's layer-by-layer geometry of one initialization.

The predicted q_l, ρ_l and log‖J_l‖² for l = 0..L from input tokens of squared norm q0 and
cosine ρ0, as a small report (``to_json``, ``verdict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sigprop.spec import Architecture, depth_or
from sigprop.theory.attention import MAX_LOGIT_SCALE
from sigprop.theory.causal import causal_trajectory, is_causal
from sigprop.theory.dynamics import trajectory as predict_trajectory
from sigprop.theory.regimes import gradient_regime
from sigprop.theory.slices import Setting

COLLAPSED = 1e-3  # 1 − ρ_L below this: the tokens have collapsed (as ``sigprop.diagnose``)


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

    @property
    def gradients(self) -> str:
        """vanishing / exploding / near the edge for log_jac_L (``sigprop.theory.regimes``)."""
        return str(gradient_regime(self.log_jac[-1]))

    @property
    def undefined_from(self) -> int | None:
        """The first layer whose state the theory cannot give (NaN), or None if every layer
        has one."""
        undefined = ~(np.isfinite(self.q) & np.isfinite(self.rho))
        return int(np.argmax(undefined)) if undefined.any() else None

    def verdict(self) -> str:
        """The state at layer L and the gradient total over the L layers, in words (or from
        which layer on, and why, the theory has no state)."""
        if self.undefined_from is not None:
            return self._undefined()
        q, rho, total = float(self.q[-1]), float(self.rho[-1]), float(self.log_jac[-1])
        state = ("the tokens have collapsed" if 1 - rho < COLLAPSED else
                 "the tokens stay apart")
        grows = f"‖∂X_L/∂X_0‖² changes by e^{total:.2f} over {self.depth} layers"
        kind = self.gradients
        gradient = (f"gradients near the edge: {grows}" if kind == "near the edge" else
                    f"gradients {kind}: {grows}")
        return (f"From q0 = {float(self.q[0]):.3g}, ρ0 = {float(self.rho[0]):.3g}: at layer "
                f"L = {self.depth}, q_L = {q:.3g} and ρ_L = {rho:.4f} ({state}); {gradient}.")

    def _undefined(self) -> str:
        """Where the state stops: blocks whose attention sees the raw tokens (post-norm, no
        norm) hand it the logit scale σ_A·q, and the attention maps are tabulated up to
        ``MAX_LOGIT_SCALE``."""
        layer = self.undefined_from
        start = f"From q0 = {float(self.q[0]):.3g}, ρ0 = {float(self.rho[0]):.3g}: "
        values = self.arch.resolved(self.depth).values
        raw = values["network"] == "transformer" and (values["block"] == "post"
                                                      or values["norm"] == "none")
        scale = float(values["sigma_A"]) * float(self.q[layer - 1]) if layer else math.nan
        if raw and scale > MAX_LOGIT_SCALE:
            why = (f"layer {layer}'s attention sees tokens of squared norm q = "
                   f"{float(self.q[layer - 1]):.3g}, so its logit scale σ_A·q = {scale:.3g} "
                   f"exceeds {MAX_LOGIT_SCALE:g}, where the theory's attention maps end "
                   "(nearly one-hot attention)")
        else:
            why = "a value left the range the theory covers"
        return f"{start}the theory has no state from layer {layer} on: {why}."

    def __repr__(self) -> str:
        return (f"TrajectoryReport({self.arch.describe()!r}, depth={self.depth}, "
                f"q_L={float(self.q[-1]):.4g}, rho_L={float(self.rho[-1]):.4f}, "
                f"log_jac_L={float(self.log_jac[-1]):+.4g})")

    def to_json(self) -> dict[str, Any]:
        """{"layers": [{"l", "q", "p", "rho", "log_jac"}, …], "gradients", "verdict",
        "undefined_from" (the first layer without a state, or null), "architecture",
        "hyperparameters"}."""
        return {"layers": self.layers(), "gradients": self.gradients, "verdict": self.verdict(),
                "undefined_from": self.undefined_from,
                "architecture": self.arch.describe(),
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
