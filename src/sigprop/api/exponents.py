"""``sigprop.exponents``: the theory's exponents at one initialization.

The asymptotic Lyapunov exponents (per layer, at the forward map's fixed point) and, at a depth
L, the finite-depth ones, as a small report: ``to_json`` is what the command line prints with
``--json``, ``verdict`` says what the numbers mean in the words of ``sigprop.theory.regimes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sigprop.runtime.values import finite_or_none
from sigprop.spec import Architecture, InvalidHyperparameter
from sigprop.theory.depth import depth_profile
from sigprop.theory.exponents import Exponents, compute_exponents
from sigprop.theory.regimes import WORDS_DEPTH, angle_regime, gradient_regime
from sigprop.theory.results import DepthProfile
from sigprop.theory.slices import Setting

SIGNAL_FLOOR = 1e-9  # a norm fixed point below this is q* = 0: the signal dies out


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

    @property
    def words_depth(self) -> int:
        """The depth L the words are about: the profile's, else ``WORDS_DEPTH``."""
        return WORDS_DEPTH if self.profile is None else self.profile.depth

    @property
    def totals(self) -> tuple[float, float]:
        """(L·λ_a, L·λ_g) at ``words_depth``: the finite-depth totals where there is a
        profile, else L times the asymptotic rates."""
        if self.profile is not None:
            p = self.profile
            return float(p.log_spread[-1]), float(p.log_jac[-1])
        depth = self.words_depth
        return depth * float(self.asymptotic.lambda_a), depth * float(self.asymptotic.lambda_g)

    @property
    def phase(self) -> str:
        """ordered / chaotic / near the edge / undefined (``sigprop.theory.regimes``)."""
        return str(angle_regime(self.totals[0]))

    @property
    def gradients(self) -> str:
        """vanishing / exploding / near the edge / undefined (``sigprop.theory.regimes``)."""
        return str(gradient_regime(self.totals[1]))

    def __repr__(self) -> str:
        e = self.asymptotic
        depth = "" if self.profile is None else f", depth={self.profile.depth}"
        return (f"ExponentsReport({self.arch.describe()!r}{depth}, lambda_a={float(e.lambda_a):+.4g}, "
                f"lambda_g={float(e.lambda_g):+.4g}, phase={self.phase!r}, "
                f"gradients={self.gradients!r})")

    def to_json(self) -> dict[str, Any]:
        """{"lambda_a", "lambda_g", "lambda_a_depth", "lambda_g_depth", "q_star", "rho_star",
        "q_collapsed", "phase", "gradients", "words_depth", "verdict", "architecture",
        "hyperparameters", "finite_depth"}; the ``_depth`` exponents are λ^(L) (null without a
        depth), "phase" and "gradients" the words for the totals over "words_depth" layers,
        every undefined value is null."""
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
            "phase": self.phase,
            "gradients": self.gradients,
            "words_depth": self.words_depth,
            "verdict": self.verdict(),
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
            "phase": self.phase,
            "gradients": self.gradients,
        }

    def verdict(self) -> str:
        """What the exponents mean over the network's depth, in one or two sentences."""
        if self.profile is not None:
            p = self.profile
            text = _spelled_out(*self.totals, p.depth, self.arch["network"])
            if not self.has_fixed_point:
                text = ("No norm fixed point: q grows with depth (to q_L = "
                        f"{float(p.q[-1]):.3g} at L = {p.depth}), so the rates change from layer "
                        f"to layer; over the L layers from q0 = {self.q0:g}, "
                        + ("ρ0 → 1 (nearly collapsed inputs): " if self.rho0 >= 1.0
                           else f"ρ0 = {self.rho0:g}: ")
                        + text)
            return text
        total_a, total_g = self.totals
        if self.signal_dies:
            return (f"The signal dies out: the norm's fixed point is q* = 0 (no bias). Distances "
                    f"between inputs shrink with the norm, by e^{total_a:.1f} over "
                    f"{WORDS_DEPTH} layers (λ_a = log χ_1 here is the decay rate of q − p), "
                    "while their angles change only slowly; ‖∂X_L/∂X_0‖² changes by "
                    f"e^{total_g:.1f} over {WORDS_DEPTH} layers.")
        return _spelled_out(total_a, total_g, WORDS_DEPTH, self.arch["network"])

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


def _spelled_out(total_a: float, total_g: float, depth: int, network: str = "transformer"
                 ) -> str:
    """One sentence on what the totals L·λ_a, L·λ_g mean for a network of ``depth`` layers, in
    the words of ``sigprop.theory.regimes``; an MLP's "tokens" are the inputs of a batch,
    which converge (ordered phase) rather than collapse in rank through attention."""
    if math.isnan(total_a) or math.isnan(total_g):
        return "The exponents are undefined here."
    what, collapse = (("token differences", "rank collapse") if network == "transformer" else
                      ("differences between inputs", "distinct inputs converge"))
    angle = {
        "ordered": f"ordered: {what} shrink by e^{total_a:.1f} over {depth} layers ({collapse})",
        "chaotic": f"chaotic: {what} grow by e^{total_a:.1f} over {depth} layers",
        "near the edge": f"near the edge of chaos: {what} change by only e^{total_a:.2f} over "
                         f"{depth} layers",
    }[str(angle_regime(total_a))]
    kind = str(gradient_regime(total_g))
    grows = f"‖∂X_L/∂X_0‖² changes by e^{total_g:.1f} over {depth} layers"
    gradient = (f"gradients near the edge: {grows}" if kind == "near the edge" else
                f"gradients {kind}: {grows}")
    return f"{angle[0].upper()}{angle[1:]}; {gradient}."
