"""Every hyperparameter and option, declared once.

A declaration gives the name (Python keyword, JSON key, sweep key), the symbol, what it means,
the allowed range or choices, the default, and where the block recipe puts it (``target``:
component part and field). Command-line flags (``--sigma-w``), phase-diagram axes
(``sigma-w``), sweep keys (``sigma_w`` or ``sigma-w``), validation messages and plot labels
all derive from here, so a new hyperparameter is one declaration plus the component field it
sets.

Three kinds:

* ``Hyperparameter``: a real number of the initialization; it can be an axis of a phase
  diagram, a swept setting, and (except the α aliases) a formula in the depth L. An *alias*
  (``expands``) sets others: ``alpha_A`` sets a_A = sqrt(1 − α_A²), b_A = α_A.
* ``Option``: a structural choice (norm placement, norm kind, activation, heads, …) or a
  setting of the input (n, q0, ρ0, depth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from sigprop.spec.components import ACTIVATIONS, MAX_SIGMA_A
from sigprop.spec.errors import InvalidHyperparameter, check_range, interval
from sigprop.spec.expressions import DepthFormula, parse_value

# The largest scale, weight or residual a hyperparameter may take: beyond it every nonlinearity
# saturates and the squared norms overflow float64 within a few layers; no network trains there.
LARGEST = 1e6
# The largest integer settings: tokens (the causal theory propagates n × n matrices), heads and
# layers (the theory's trajectories are O(L)).
MAX_TOKENS, MAX_HEADS, MAX_DEPTH = 4096, 4096, 100_000


@dataclass(frozen=True)
class _Declared:
    """What every declaration has: a name, and the command-line spelling derived from it."""

    name: str

    @property
    def key(self) -> str:
        """The axis name and flag stem: ``sigma-a`` for ``sigma_A``."""
        return self.name.lower().replace("_", "-")

    @property
    def flag(self) -> str:
        return f"--{self.key}"


@dataclass(frozen=True)
class Hyperparameter(_Declared):
    """A numeric initialization hyperparameter, or an alias that sets several (``expands``)."""

    symbol: str
    latex: str
    meaning: str
    low: float
    high: float
    closed_low: bool
    plot_range: tuple[float, float]
    default: float | None = None
    target: tuple[str, str] | None = None
    expands: Callable[[Any], dict[str, Any]] | None = None
    formula: bool = True  # may be given as a formula in the depth L

    @property
    def allowed(self) -> str:
        return interval(self.low, self.high, self.closed_low)

    @property
    def label(self) -> str:
        """Axis label for plots: the meaning's first clause and the symbol in TeX."""
        return f"{self.meaning.split(':')[0]} ${self.latex}$"

    def check(self, value: Any) -> Any:
        """``value`` (a number, an array, or a formula in L given as ``DepthFormula`` or as a
        string) if allowed, strings parsed."""
        if isinstance(value, str):
            value = parse_value(value)
        if isinstance(value, DepthFormula):
            if not self.formula:
                raise InvalidHyperparameter(f"{self.name} takes a number, not a formula in L; "
                                            "give the skip and branch weights as formulas instead")
            return value
        try:
            array = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise InvalidHyperparameter(
                f"{self.name} must be a number in {self.allowed}; got {value!r}") from None
        check_range(self.name, array, self.low, self.high, self.closed_low)
        return value


@dataclass(frozen=True)
class Option(_Declared):
    """A structural choice or an input setting: a choice among names, an integer, a number or
    a switch."""

    meaning: str
    kind: type
    default: Any
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    closed_low: bool = True
    target: tuple[str, str] | None = None

    def check(self, value: Any) -> Any:
        """The value in its canonical type if allowed; ``InvalidHyperparameter`` otherwise."""
        if self.choices:
            if value not in self.choices:
                raise InvalidHyperparameter(
                    f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}")
            return value
        if self.kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise InvalidHyperparameter(f"{self.name} must be true or false; got {value!r}")
            return bool(value)
        if self.kind is int:
            if isinstance(value, (float, np.floating)) and float(value).is_integer():
                value = int(value)
            high = math.inf if self.high is None else self.high
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not self.low <= value <= high:
                bound = f"in [{self.low:g}, {high:g}]" if self.high else f">= {self.low:g}"
                raise InvalidHyperparameter(
                    f"{self.name} must be an integer {bound}; got {value!r}")
            return int(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidHyperparameter(f"{self.name} must be a number; got {value!r}") from None
        check_range(self.name, number, self.low, self.high, self.closed_low)
        return number


def _alpha(suffix: str) -> Callable[[Any], dict[str, Any]]:
    """α ↦ (a, b) = (sqrt(1 − α²), α) for the branch ``suffix`` ('a' or 'm')."""

    def expand(alpha: Any) -> dict[str, Any]:
        alpha = np.asarray(alpha, dtype=float) if np.ndim(alpha) else float(alpha)
        return {f"skip_{suffix}": np.sqrt(1.0 - np.square(alpha)), f"branch_{suffix}": alpha}

    return expand


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter("skip_a", "a_A", "a_A",
                   "attention skip weight: X ← a_A X + b_A SA(N X)",
                   0.0, LARGEST, True, (0.0, 2.0), math.sqrt(0.75),
                   target=("attention_residual", "skip")),
    Hyperparameter("branch_a", "b_A", "b_A",
                   "attention branch scale: X ← a_A X + b_A SA(N X)",
                   0.0, LARGEST, True, (0.0, 1.5), 0.5,
                   target=("attention_residual", "scale")),
    Hyperparameter("skip_m", "a_M", "a_M",
                   "MLP skip weight: X ← a_M X + b_M MLP(N X)",
                   0.0, LARGEST, True, (0.0, 2.0), math.sqrt(0.75),
                   target=("mlp_residual", "skip")),
    Hyperparameter("branch_m", "b_M", "b_M",
                   "MLP branch scale: X ← a_M X + b_M MLP(N X)",
                   0.0, LARGEST, True, (0.0, 1.5), 0.5,
                   target=("mlp_residual", "scale")),
    Hyperparameter("sigma_A", "σ_A", r"\sigma_A",
                   "attention logit scale: W_Q, W_K ~ N(0, σ_A/d)",
                   0.0, MAX_SIGMA_A, False, (0.1, 3.0), 0.6, target=("attention", "sigma_A")),
    Hyperparameter("sigma_w", "σ_w", r"\sigma_w",
                   "MLP weight scale: W_1 ~ N(0, σ_w²/d) (plain MLP: W)",
                   0.0, LARGEST, False, (0.1, 6.0), 2.0, target=("mlp", "sigma_w")),
    Hyperparameter("sigma_b", "σ_b", r"\sigma_b",
                   "MLP bias scale: b_1 ~ N(0, σ_b²) (plain MLP: b)",
                   0.0, LARGEST, True, (0.0, 2.0), 0.0, target=("mlp", "sigma_b")),
    Hyperparameter("sigma_2", "σ_2", r"\sigma_2",
                   "MLP readout scale: W_2 ~ N(0, σ_2²/d_ff)",
                   0.0, LARGEST, False, (0.1, 3.0), 1.0, target=("mlp", "sigma_2")),
    Hyperparameter("kappa", "κ", r"\kappa",
                   "DyT scale: N(x) = tanh(κ x)",
                   0.0, LARGEST, False, (0.05, 2.0), 0.5, target=("dyt", "kappa")),
)
"""The numeric initialization hyperparameters (axes, sweep keys, formulas in L)."""

ALIASES: tuple[Hyperparameter, ...] = (
    Hyperparameter("alpha", "α", r"\alpha",
                   "residual strength: α_A = α_M = α, a = sqrt(1 − α²), b = α",
                   0.0, 1.0, True, (0.0, 1.0), formula=False,
                   expands=lambda v: {**_alpha("a")(v), **_alpha("m")(v)}),
    Hyperparameter("alpha_A", "α_A", r"\alpha_A",
                   "attention residual strength: a_A = sqrt(1 − α_A²), b_A = α_A",
                   0.0, 1.0, True, (0.0, 1.0), formula=False, expands=_alpha("a")),
    Hyperparameter("alpha_M", "α_M", r"\alpha_M",
                   "MLP residual strength: a_M = sqrt(1 − α_M²), b_M = α_M",
                   0.0, 1.0, True, (0.0, 1.0), formula=False, expands=_alpha("m")),
    Hyperparameter("skip", "a", "a",
                   "skip weight of both branches: a_A = a_M = a",
                   0.0, LARGEST, True, (0.0, 2.0),
                   expands=lambda v: {"skip_a": v, "skip_m": v}),
    Hyperparameter("branch", "b", "b",
                   "branch scale of both branches: b_A = b_M = b",
                   0.0, LARGEST, True, (0.0, 1.5),
                   expands=lambda v: {"branch_a": v, "branch_m": v}),
)
"""Aliases that set several hyperparameters at once (α, α_A, α_M, a, b)."""

OPTIONS: tuple[Option, ...] = (
    Option("network", "what one layer is: transformer (attention then MLP sub-block), resmlp "
           "(the MLP sub-block alone: X ← a_M X + b_M MLP(N X)), mlp (h ← W φ(h) + b, no norm, "
           "no residual: the deep MLP of Poole et al.)", str, "transformer",
           choices=("transformer", "resmlp", "mlp")),
    Option("block", "norm placement: pre, X ← a X + b f(N X); post, X ← N(a X + b f(X))",
           str, "pre", choices=("pre", "post")),
    Option("norm", "norm kind: rms (sqrt(d) x/|x|), layer (mean-centred), dyt (tanh(κ x)), "
           "none", str, "rms", choices=("rms", "layer", "dyt", "none")),
    Option("activation", "MLP nonlinearity φ", str, "tanh", choices=tuple(ACTIVATIONS),
           target=("mlp", "activation")),
    Option("gated", "gated MLP W_2 (φ(W_1 y + b_1) ⊙ W_3 y), W_3 ~ N(0, 1/d); with φ = silu "
           "this is SwiGLU", bool, False, target=("mlp", "gated")),
    Option("tied_readout", "W_2 ~ N(0, σ_w²/d_ff), scaled by σ_w like W_1 (σ_2 = σ_w)",
           bool, False),
    Option("heads", "attention heads H (of width d/H; the wide-limit theory does not depend "
           "on H)", int, 1, low=1, high=MAX_HEADS, target=("attention", "heads")),
    Option("out_proj", "attention output projection W_O ~ N(0, 1/d)", bool, False,
           target=("attention", "out_proj")),
    Option("ff_ratio", "MLP hidden width d_ff / d (finite width only)", float, 1.0,
           low=0.0, high=1e3, closed_low=False, target=("mlp", "ff_ratio")),
    Option("causal", "causal attention: token i attends to j ≤ i", bool, False,
           target=("attention", "causal")),
)
"""The structural options of a block (network, norm placement and kind, activation, heads …)."""

SETTINGS: tuple[Option, ...] = (
    Option("n_tokens", "number of tokens n", int, 16, low=2, high=MAX_TOKENS),
    Option("depth", "number of layers L", int, None, low=1, high=MAX_DEPTH),
    Option("q0", "input mean squared norm q_0", float, 1.0, low=0.0, high=LARGEST,
           closed_low=False),
    Option("rho0", "input token cosine ρ_0", float, 0.0, low=0.0, high=1.0),
)
"""The input settings of the theory: tokens n, depth L, input norm q0 and cosine ρ0."""

NUMERIC = {h.name: h for h in (*HYPERPARAMETERS, *ALIASES)}
STRUCTURAL = {o.name: o for o in OPTIONS}
INPUTS = {o.name: o for o in SETTINGS}
"""The input settings by name."""
_DECLARED = {d.name: d for d in (*HYPERPARAMETERS, *ALIASES, *OPTIONS, *SETTINGS)}
_LOWERCASE = {d.name.lower(): d for d in _DECLARED.values()}


def _find(name: str) -> Hyperparameter | Option | None:
    """Exact names (``sigma_A``), and all-lowercase spellings with dashes or underscores
    (``sigma-a``, ``--sigma-a``, ``sigma_a``); mixed case other than the declared is unknown."""
    name = name.strip().lstrip("-")
    if name in _DECLARED:
        return _DECLARED[name]
    return _LOWERCASE.get(name.replace("-", "_")) if name == name.lower() else None


def declaration(name: str) -> Hyperparameter | Option:
    """The declaration called ``name``, in any spelling (``sigma_A``, ``sigma-a``, ``--sigma-a``);
    ``InvalidHyperparameter`` listing the names otherwise."""
    found = _find(name)
    if found is None:
        known = ", ".join(_DECLARED)
        raise InvalidHyperparameter(f"unknown hyperparameter or option {name!r}; known: {known}")
    return found


def axis(name: str) -> Hyperparameter:
    """A numeric hyperparameter or alias usable as a phase-diagram axis or a swept range."""
    found = _find(name)
    if not isinstance(found, Hyperparameter):
        raise InvalidHyperparameter(
            f"axis must be one of {', '.join(h.key for h in NUMERIC.values())}; got {name!r}")
    return found


def canonical_names(name: str) -> tuple[str, ...]:
    """The canonical hyperparameters a numeric name sets (itself, or an alias's targets)."""
    found = axis(name)
    if found.expands is None:
        return (found.name,)
    return tuple(found.expands(0.5))
