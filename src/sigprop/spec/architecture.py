"""``Architecture``: one layer of a network, its structure and initialization, from declared values.

An architecture is a preset (``reference``, ``pre-ln``, ``post-ln``, ``gpt2``, ``llama``,
``bert``, ``mlp``, ``resmlp``) or a description file, with any declared value overridden. Its
``layer()`` is the component description (``sigprop.spec.components``) that the theory and the
PyTorch builder both read; the block recipe here is the only place that knows how the options
compose. A transformer layer (option ``network`` = transformer) is

    pre-norm:   X ← a_A X + b_A SA(N X),      X ← a_M X + b_M MLP(N X)
    post-norm:  X ← N(a_A X + b_A SA(X)),     X ← N(a_M X + b_M MLP(X))
    no norm:    X ← a_A X + b_A SA(X),        X ← a_M X + b_M MLP(X)

``resmlp`` keeps the MLP sub-block alone (no attention: the tokens never interact), and ``mlp``
is the plain deep MLP of Poole et al., h ← W φ(h) + b with W ~ N(0, σ_w²/d), b ~ N(0, σ_b²)
(``Dense``), where only σ_w, σ_b and φ apply.

Description file (``--arch FILE.json``): a JSON object whose keys are declared names (dashes or
underscores), plus optionally "preset" (the starting point, default "reference"), "name" and
"depth" (the depth it describes; it resolves formulas in L). Numeric values may be formulas in
L given as strings. Example::

    {"preset": "gpt2", "name": "GPT-2, wider MLP", "ff_ratio": 8, "sigma_w": 0.8,
     "branch_m": "0.5/sqrt(L)"}
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sigprop.spec.components import (
    MLP,
    Dense,
    DyT,
    LayerNorm,
    Residual,
    RMSNorm,
    SelfAttention,
    Serial,
)
from sigprop.spec.declarations import (
    HYPERPARAMETERS,
    axis,
    INPUTS,
    OPTIONS,
    Hyperparameter,
    declaration,
)
from sigprop.spec.errors import InvalidHyperparameter, NotCovered
from sigprop.spec.expressions import DepthFormula
from sigprop.spec.presets import PRESETS

FILE_KEYS = ("preset", "name", "depth")


@dataclass(frozen=True)
class Architecture:
    """A block's options and hyperparameters by declared name (``values``), its ``name`` and
    the ``depth`` it describes (None: any depth; needed to resolve formulas in L).

    Numeric values are numbers, numpy arrays (one architecture then stands for a grid) or
    ``DepthFormula``. Build one with ``Architecture.load``; change it with ``with_values``.
    """

    name: str = "reference"
    values: Mapping[str, Any] = field(default_factory=dict)
    depth: int | None = None

    def __post_init__(self) -> None:
        missing = [d.name for d in (*HYPERPARAMETERS, *OPTIONS) if d.name not in self.values]
        if missing:
            defaults = {d.name: d.default for d in (*HYPERPARAMETERS, *OPTIONS)}
            object.__setattr__(self, "values", {**defaults, **self.values})

    @classmethod
    def load(cls, arch: str | Path | Architecture | None = None) -> Architecture:
        """A preset by name, a description file (a path ending in .json), an ``Architecture``
        as is, or the reference transformer for None."""
        if isinstance(arch, Architecture):
            return arch
        if arch is None:
            return cls.preset("reference")
        text = str(arch)
        if text in PRESETS:
            return cls.preset(text)
        if text.endswith(".json") or Path(text).is_file():
            return cls.from_file(Path(text))
        raise InvalidHyperparameter(f"unknown architecture {text!r}: give a preset "
                                    f"({', '.join(PRESETS)}) or a .json description file")

    @classmethod
    def preset(cls, name: str) -> Architecture:
        """The named preset (``sigprop.spec.presets.PRESETS``)."""
        if name not in PRESETS:
            raise InvalidHyperparameter(f"unknown preset {name!r}; choose one of "
                                        f"{', '.join(PRESETS)}")
        preset = PRESETS[name]
        return cls(name, {}, preset.depth).with_values(**preset.values)

    @classmethod
    def from_file(cls, path: Path) -> Architecture:
        """A description file (module docstring); errors name the file and the key."""
        try:
            data = json.loads(Path(path).read_text())
        except OSError as error:
            raise InvalidHyperparameter(f"cannot read description file {path}: "
                                        f"{error.strerror}") from None
        except json.JSONDecodeError as error:
            raise InvalidHyperparameter(f"description file {path} is not valid JSON: "
                                        f"{error.msg} at line {error.lineno}, column "
                                        f"{error.colno}") from None
        if not isinstance(data, dict):
            raise InvalidHyperparameter(f"description file {path} must hold a JSON object")
        base = cls.preset(str(data.get("preset", "reference")))
        depth = data.get("depth", base.depth)
        if depth is not None:
            depth = INPUTS["depth"].check(depth)
        values = {}
        for key, value in data.items():
            if key in FILE_KEYS:
                continue
            try:
                found = declaration(key)
            except InvalidHyperparameter:
                allowed = [*FILE_KEYS, *(d.name for d in (*HYPERPARAMETERS, *OPTIONS))]
                raise InvalidHyperparameter(f"description file {path}: unknown key {key!r}; "
                                            f"allowed: {', '.join(allowed)}") from None
            values[found.name] = value
        try:
            described = base.with_values(**values)
        except InvalidHyperparameter as error:
            raise InvalidHyperparameter(f"description file {path}: {error}") from None
        return replace(described, name=str(data.get("name", Path(path).stem)), depth=depth)

    def description(self) -> dict[str, Any]:
        """This block as the JSON object of a description file, which ``from_file`` reads back
        as the same block: "name", "depth" when set, and every declared value, formulas in L
        as their text (σ_2 left out when the readout is tied to σ_w)."""
        out: dict[str, Any] = {"name": self.name}
        if self.depth is not None:
            out["depth"] = self.depth
        for name, value in self.values.items():
            if name == "sigma_2" and self.values["tied_readout"]:
                continue
            out[name] = value.text if isinstance(value, DepthFormula) else np.asarray(
                value).tolist()
        return out

    def with_values(self, **given: Any) -> Architecture:
        """A copy with the given declared values (any spelling; aliases expand; None means not
        given). Raises ``InvalidHyperparameter`` for a value out of range, an unknown name, or
        two names that set the same hyperparameter."""
        found = {}
        for key, value in given.items():
            if value is None:
                continue
            decl = declaration(key)
            if decl.name in INPUTS:
                raise InvalidHyperparameter(f"{decl.name} is a setting of the input, not of the "
                                            "architecture")
            found[decl.name] = (decl, decl.check(value))
        _reject_overlaps({name: decl for name, (decl, _) in found.items()})
        values = dict(self.values)
        for name, (decl, value) in found.items():
            if isinstance(decl, Hyperparameter) and decl.expands is not None:
                values.update(decl.expands(value))
            else:
                values[name] = value
        if values["tied_readout"] and "sigma_2" in found:
            raise InvalidHyperparameter("tied_readout sets σ_2 = σ_w: give either tied_readout "
                                        "(--tied-readout) or sigma_2 (--sigma-2), not both")
        return replace(self, values=values)

    def __getitem__(self, name: str) -> Any:
        return self.values[declaration(name).name]

    def resolved(self, depth: int | None = None) -> Architecture:
        """Formulas in L evaluated at ``depth`` (default: the architecture's own depth)."""
        depth = self.depth if depth is None else depth
        formulas = {k: v for k, v in self.values.items() if isinstance(v, DepthFormula)}
        if not formulas:
            return self
        if depth is None:
            name, formula = next(iter(formulas.items()))
            raise InvalidHyperparameter(f"{name} = {formula} depends on the depth L: give a "
                                        "depth (--depth)")
        values = {**self.values, **{k: f(depth) for k, f in formulas.items()}}
        for name, value in values.items():
            if name in formulas:
                declaration(name).check(value)
        return replace(self, values=values, depth=depth)

    def layer(self, depth: int | None = None) -> Serial:
        """The layer description at ``depth`` (formulas in L resolved). A sub-block whose skip
        weight and branch scale are both 0 would erase the tokens (X ← 0, and a norm of 0 is
        undefined): ``InvalidHyperparameter`` when both are given as numbers (on a grid those
        points come out NaN)."""
        values = self.resolved(depth).values
        branches = {"transformer": ("a", "m"), "resmlp": ("m",), "mlp": ()}[values["network"]]
        for s in branches:
            skip, branch = values[f"skip_{s}"], values[f"branch_{s}"]
            if np.ndim(skip) == 0 and np.ndim(branch) == 0 and skip == 0 and branch == 0:
                sub = {"a": "attention", "m": "MLP"}[s]
                raise InvalidHyperparameter(
                    f"skip_{s} and branch_{s} are both 0: the {sub} sub-block would erase the "
                    f"tokens (X ← 0); give --skip-{s} or --branch-{s} a value > 0")
        return _block(values)

    def theory_layer(self, depth: int | None = None) -> Serial:
        """``layer`` after checking that the wide-limit theory covers it (``NotCovered``)."""
        if (self.values["network"] != "mlp" and self.values["block"] == "post"
                and self.values["norm"] == "dyt"):
            raise NotCovered("post-norm DyT is not covered by the wide-limit theory: the stream "
                             "then holds tanh of Gaussians, whose whole distribution (not only "
                             "the Gram matrix) would have to be tracked; measure it with "
                             "`sigprop simulate`")
        return self.layer(depth)

    def plot_range(self, name: str) -> tuple[float, float]:
        """The default range of the phase-diagram axis ``name``: the preset's, if it declares
        one for it, else the declared plotting range."""
        decl = axis(name)
        preset = PRESETS.get(self.name)
        ranges = (preset.plot_ranges or {}) if preset is not None else {}
        return ranges.get(decl.name, decl.plot_range)

    @property
    def structure(self) -> tuple:
        """The structural options: architectures that share them stack and train together."""
        return tuple((o.name, self.values[o.name]) for o in OPTIONS)

    @property
    def alpha_form(self) -> bool:
        """Whether the residuals the layer has are the paper's a = sqrt(1 − α²), b = α (with
        α ≤ 1); False for the plain MLP, which has none."""
        branches = {"transformer": ("a", "m"), "resmlp": ("m",), "mlp": ()}[self.values["network"]]
        return bool(branches) and all(
            _is_alpha_pair(self.values[f"skip_{s}"], self.values[f"branch_{s}"]) for s in branches)

    @property
    def used(self) -> tuple[str, ...]:
        """The declared names this network's layer reads: all for a transformer; a residual
        MLP drops the attention's; a plain MLP reads only σ_w, σ_b and φ."""
        network = self.values["network"]
        if network == "mlp":
            return ("network", "sigma_w", "sigma_b", "activation")
        dropped = ("attention", "attention_residual") if network == "resmlp" else ()
        return tuple(d.name for d in (*HYPERPARAMETERS, *OPTIONS)
                     if d.target is None or d.target[0] not in dropped)

    def scalars(self) -> dict[str, Any]:
        """Every value the layer uses (``used``) as plain JSON (numbers, strings for
        formulas), and α_A, α_M when the residuals are in the paper's form."""
        out: dict[str, Any] = {}
        if self.alpha_form:
            out |= {f"alpha_{s.upper()}": float(self.values[f"branch_{s}"])
                    for s in ("a", "m") if f"branch_{s}" in self.used}
        used = set(self.used)
        for name, value in self.values.items():
            if name not in used:
                continue
            if isinstance(value, DepthFormula):
                out[name] = str(value)
            elif isinstance(value, (bool, str, int)) and not isinstance(value, float):
                out[name] = value
            else:
                out[name] = float(np.asarray(value).item())
        return out

    def describe(self) -> str:
        """One line: 'reference: pre-rms, 1 head, tanh MLP (d_ff = 1d)'; the name is 'custom'
        when the structural options differ from those of the preset it is named after."""
        v = self.values
        name = self.name
        if name in PRESETS and self.structure != Architecture.preset(name).structure:
            name = f"custom ({name} changed)"
        if v["network"] == "mlp":
            return f"{name}: plain MLP h ← W φ(h) + b, {v['activation']}, no norm, no residual"
        norm = "no norm" if v["norm"] == "none" else f"{v['block']}-{v['norm']}"
        heads = f"{v['heads']} head{'s' if v['heads'] > 1 else ''}" + (" + W_O" if v["out_proj"] else "")
        mlp = f"{'gated ' if v['gated'] else ''}{v['activation']} MLP (d_ff = {v['ff_ratio']:g}d)"
        if v["network"] == "resmlp":
            return f"{name}: residual MLP, {norm}, {mlp}, no attention"
        return f"{name}: {norm}, {heads}, {mlp}" + (", causal" if v["causal"] else "")


def _block(values: Mapping[str, Any]) -> Serial:
    """The recipe: components filled from the declarations' targets (module docstring)."""
    parts: dict[str, dict[str, Any]] = defaultdict(dict)
    for decl in (*HYPERPARAMETERS, *OPTIONS):
        if decl.target is not None:
            part, name = decl.target
            parts[part][name] = values[decl.name]
    if values["tied_readout"]:
        parts["mlp"]["sigma_2"] = parts["mlp"]["sigma_w"]
    if values["network"] == "mlp":
        mlp = parts["mlp"]
        return Serial((Dense(mlp["sigma_w"], mlp["sigma_b"], mlp["activation"]),))
    norm = {"rms": RMSNorm(), "layer": LayerNorm(), "dyt": DyT(**parts["dyt"]),
            "none": None}[values["norm"]]
    branches = {"attention": SelfAttention(**parts["attention"]), "mlp": MLP(**parts["mlp"])}
    if values["network"] == "resmlp":
        del branches["attention"]
    if values["block"] == "pre" or norm is None:
        return Serial(tuple(
            Residual(**parts[f"{key}_residual"], branch=Serial(((norm,) if norm else ()) + (f,)))
            for key, f in branches.items()))
    return Serial(tuple(component for key, f in branches.items() for component in
                        (Residual(**parts[f"{key}_residual"], branch=Serial((f,))), norm)))


def _reject_overlaps(given: dict[str, Any]) -> None:
    """Two given names that set one hyperparameter (an alias and its target) conflict."""
    sets = {name: set(decl.expands(0.5)) if getattr(decl, "expands", None) else {name}
            for name, decl in given.items()}
    names = list(sets)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            both = sets[first] & sets[second]
            if both:
                raise InvalidHyperparameter(
                    f"{first} ({given[first].flag}) and {second} ({given[second].flag}) both set "
                    f"{', '.join(sorted(both))}: give one of them")


def _is_alpha_pair(skip: Any, branch: Any) -> bool:
    if isinstance(skip, DepthFormula) or isinstance(branch, DepthFormula):
        return False
    skip, branch = np.asarray(skip, dtype=float), np.asarray(branch, dtype=float)
    return bool(np.all(branch <= 1.0) and np.allclose(skip**2 + branch**2, 1.0, rtol=0, atol=1e-12))


def reference_layer(
    alpha_A: Any,
    alpha_M: Any,
    sigma_A: Any,
    sigma_w: Any,
    sigma_b: Any = 0.0,
    activation: str = "tanh",
    causal: bool = False,
) -> Serial:
    """One layer of the reference transformer (docs/theory.md §1): attention block, then MLP
    block, both sqrt(1 − α²) X + α f(RMSNorm X). Raises ``InvalidHyperparameter`` naming the
    first hyperparameter outside its range."""
    return Architecture.preset("reference").with_values(
        alpha_A=alpha_A, alpha_M=alpha_M, sigma_A=sigma_A, sigma_w=sigma_w, sigma_b=sigma_b,
        activation=activation, causal=causal).layer()


def depth_or(arch: Architecture, depth: int | None, fallback: int | None) -> int | None:
    """The depth to use: the one given, else the architecture's, else ``fallback``."""
    if depth is not None:
        return INPUTS["depth"].check(depth)
    return arch.depth if arch.depth is not None else fallback

