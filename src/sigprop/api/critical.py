"""``sigprop.critical``: the critical initializations of a slice of hyperparameter space.

Where λ_a = 0 (the edge of chaos), λ_g = 0 (the edge of gradient stability) and both, solving
for y at every x on a grid (``sigprop.theory.slices.critical_set``); at finite depth also the
near-critical segment of the λ_a = 0 curve, where |L·λ_g| ≤ ``EDGE`` as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sigprop.spec import Architecture
from sigprop.theory.regimes import EDGE
from sigprop.theory.slices import (
    CriticalSet,
    Setting,
    axis_range,
    critical_set,
    default_x_axis,
    settle_definition,
)
from sigprop.theory.zero_curves import CurvePoints



@dataclass(frozen=True)
class CriticalReport:
    """The critical initializations of a slice, as ``sigprop.critical`` returns them."""

    arch: Architecture
    setting: Setting
    x_axis: str | None
    y_axis: str
    found: CriticalSet

    def near_critical(self) -> list[dict[str, Any]] | None:
        """Finite depth only: the stretches of the λ_a^(L) = 0 curve on which |L·λ_g^(L)| <
        ``EDGE`` as well, one per run of consecutive curve points of a branch:
        [{"branch", "x_low", "x_high", "y_low", "y_high", "max_abs_L_lambda_g"}]."""
        if self.setting.depth is None:
            return None
        curve, depth = self.found.lambda_a_zero, self.setting.depth
        near = np.abs(depth * self.found.lambda_g_on_edge) <= EDGE
        segments = []
        for branch in np.unique(curve.branch):
            idx = np.flatnonzero(curve.branch == branch)
            runs = np.split(idx, np.flatnonzero(np.diff(near[idx].astype(int)) != 0) + 1)
            for run in runs:
                if run.size and near[run[0]]:
                    segments.append({
                        "branch": int(branch),
                        "x_low": float(curve.x[run].min()) if self.x_axis else None,
                        "x_high": float(curve.x[run].max()) if self.x_axis else None,
                        "y_low": float(curve.y[run].min()), "y_high": float(curve.y[run].max()),
                        "max_abs_L_lambda_g": float(np.max(np.abs(
                            depth * self.found.lambda_g_on_edge[run]))),
                    })
        return segments

    def verdict(self) -> str:
        """Where the zero curves are, in one or two sentences."""
        found, y, x = self.found, self.y_axis, self.x_axis
        crossings = found.crossings
        if crossings.y.size:
            where = ", ".join(
                (f"{x} = {cx:.3g}, " if x else "") + f"{y} = {cy:.3g}"
                for cx, cy in zip(crossings.x[:3], crossings.y[:3]))
            more = f" (and {crossings.y.size - 3} more)" if crossings.y.size > 3 else ""
            text = f"Both exponents vanish at {where}{more}."
        elif found.closest is not None:
            c = found.closest
            where = (f"{x} = {c['x']:.3g}, " if x else "") + f"{y} = {c['y']:.3g}"
            text = (f"The zero curves do not cross in this slice; on the edge of chaos |λ_g| is "
                    f"smallest at {where}, where λ_g = {c['lambda_g']:+.4f}.")
        else:
            text = f"λ_a = 0 has no solution for {y} in this slice."
        segments = self.near_critical()
        if segments:
            s = segments[0]
            span = (f"{x} ∈ [{s['x_low']:.3g}, {s['x_high']:.3g}]" if x else
                    f"{y} ∈ [{s['y_low']:.3g}, {s['y_high']:.3g}]")
            text += (f" Near-critical at L = {self.setting.depth}: along λ_a^(L) = 0 for {span}, "
                     f"|L·λ_g^(L)| ≤ {s['max_abs_L_lambda_g']:.2f}.")
        return text

    def __repr__(self) -> str:
        return (f"CriticalReport(x={self.x_axis!r}, y={self.y_axis!r}, "
                f"lambda_a_zero={self.found.lambda_a_zero.y.size} points, "
                f"lambda_g_zero={self.found.lambda_g_zero.y.size} points, "
                f"crossings={self.found.crossings.y.size})")

    def to_json(self) -> dict[str, Any]:
        """{"x_axis", "y_axis", "lambda_a_zero": [{"x", "y", "branch"}, …], "lambda_g_zero",
        "crossings", "closest_on_edge_of_chaos", "near_critical" (finite depth: the segments
        of the λ_a = 0 curve with |L·λ_g| < 0.5; else null), "exponents", "depth", "q0",
        "rho0", "hyperparameters"}."""
        closest = self.found.closest
        if closest is not None and self.x_axis is None:
            closest = {**closest, "x": None}
        return {
            "x_axis": self.x_axis,
            "y_axis": self.y_axis,
            "lambda_a_zero": self._rows(self.found.lambda_a_zero),
            "lambda_g_zero": self._rows(self.found.lambda_g_zero),
            "crossings": self._rows(self.found.crossings),
            "closest_on_edge_of_chaos": closest,
            "near_critical": self.near_critical(),
            "depth": self.setting.depth, "q0": self.setting.q0,
            "rho0": self.setting.rho0 if self.setting.depth is not None else None,
            "exponents": self.setting.label,
            "verdict": self.verdict(),
            "architecture": self.arch.describe(),
            "hyperparameters": {**self.arch.scalars(), "n_tokens": self.setting.n_tokens},
        }

    def _rows(self, curve: CurvePoints) -> list[dict]:
        return [{"x": (float(cx) if self.x_axis else None), "y": float(cy), "branch": int(b)}
                for cx, cy, b in zip(curve.x, curve.y, curve.branch)]


def critical(
    x: str | None = None,
    y: str = "sigma-w",
    arch: Architecture | str | None = None,
    *,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    points: int = 24,
    n_tokens: int = 16,
    depth: int | None = None,
    q0: float = 1.0,
    rho0: float = 1.0,
    **values: Any,
) -> CriticalReport:
    """Critical initializations: where λ_a = 0 (edge of chaos), λ_g = 0 (edge of gradient
    stability) and both, solving for ``y`` at each of ``points`` values of ``x`` (or in the
    one-parameter slice along ``y`` when ``x`` is "none").

    ``arch``: a preset name, a .json description file or an ``Architecture`` (default: the
    reference transformer); ``values``: any declared hyperparameter or option (``sigma_b=1``);
    ``x`` defaults to ``alpha`` for blocks in the paper's residual form and ``branch`` otherwise.
    ``depth`` L switches to the finite-depth exponents λ^(L) from (q0, ρ0) (the only ones for
    blocks without a norm fixed point; ρ0 = 1 is the limit of nearly collapsed inputs). Then
    the report also lists the near-critical segment of the λ_a^(L) = 0 curve, where
    |L·λ_g^(L)| < ``EDGE`` too: at finite depth the crossing is often ill-conditioned
    (λ_g^(L) stays small along a long stretch of the edge), and the segment says how far.
    Raises ``InvalidHyperparameter``.
    """
    block = Architecture.load(arch).with_values(**values)
    x_axis = default_x_axis(block) if x is None else (None if x == "none" else x)
    y_range = axis_range(y, y_range or block.plot_range(y), 2)
    x_range = axis_range(x_axis, x_range or block.plot_range(x_axis), points) if x_axis else None
    setting = settle_definition(block, Setting(n_tokens, depth, q0, rho0), x_axis, x_range, y,
                                y_range)
    found = critical_set(block, setting, x_axis, x_range, y, y_range, x_points=points)
    return CriticalReport(block, setting, x_axis, y, found)
