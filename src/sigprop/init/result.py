"""A critical initialization as data: the knob values, what they change, the exponents before
and after, and how to apply it again to a fresh model.

The JSON (``CriticalInit.to_json``, written by ``sigprop init --out``) ::

    {"before": {"lambda_a", "lambda_g", "log_gap_L", "log_jac_L", "departure", …},
     "after": {…}, "scales": {knob: value}, "evaluations": k, "seconds": t,
     "reached": bool, "reason": "…", "meaning": "…", "family": "…", "constraint": "…",
     "knobs": {knob: {"kind", "summary", "parameters": [names]}}, "model", "depth", "input",
     "warm_start": {"source": "theory", "scales", "log_gap_L", "log_jac_L", "departure",
     "evaluations", "seconds"} or null, "path": [evaluations]}

"scales" holds each knob's value: a factor for ``weight`` and ``branch`` knobs, the shift t
for ``shift`` knobs (0: unchanged), the value set for ``set`` knobs ("knobs" gives the kind).
"evaluations" counts probe evaluations of the real model; the theory's are in "warm_start".
"family" is the network's family (transformer, convolutional, recurrent, graph), "meaning"
what reaching both targets means for it in its own words; "reason" is, when reached, that
meaning, and otherwise why the closest point misses (and what would fix it).

lambda_a and lambda_g are the finite-depth per-layer exponents at the model's depth L,
λ_a^(L) = log_gap_L / L and λ_g^(L) = log_jac_L / L (``sigprop.diagnose``); lambda_g_norm =
log_jac_norm_L / L is the gradient exponent of the token directions. "gradient" names the one
the search targeted ("raw" or "normalized").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from sigprop.init.knobs import KNOBS, check_knobs, knob_slots
from sigprop.init.ensemble import apply_slots, whole_departure
from sigprop.measure.blocks import DiagnoseError
from sigprop.measure.diagnose import Diagnosis

FORMAT = 1


def summary(diagnosis: Diagnosis) -> dict:
    """The whole-model numbers of a diagnosis (seed means and standard errors)."""
    out = {}
    for name in ("lambda_a_depth", "lambda_g_depth", "log_gap_L", "log_jac_L", "log_jac_norm_L"):
        estimate = getattr(diagnosis, name)
        key = name.removesuffix("_depth")
        out |= {key: _finite(estimate.mean), f"{key}_stderr": _finite(estimate.stderr)}
    departure = whole_departure(diagnosis.layers["departure_stage"],
                                diagnosis.tokens_per_layer, diagnosis.widths_per_layer)
    out["lambda_g_norm"] = _finite(diagnosis.log_jac_norm_L.mean / diagnosis.depth)
    return {**out, "departure": _finite(departure.mean()),
            "one_minus_rho_L": _finite(diagnosis.mean("one_minus_rho")[-1]),
            "lambda_a_late": _finite(diagnosis.lambda_a.mean),
            "lambda_g_late": _finite(diagnosis.lambda_g.mean)}


@dataclass(frozen=True)
class CriticalInit:
    """The result of ``critical_init``; ``apply(model)`` rescales a fresh model in place."""

    scales: dict[str, float]
    parameters: dict[str, list[str]]
    before: dict
    after: dict
    evaluations: int
    seconds: float
    reached: bool
    reason: str
    constraint: str
    model: str
    depth: int
    input: str
    path: list[dict] = field(default_factory=list)
    warm_start: dict | None = None
    gradient: str = "raw"
    family: str = "transformer"
    meaning: str = ""

    def apply(self, model: nn.Module, blocks: str | None = None) -> nn.Module:
        """Rescale ``model``'s initial parameters in place (and return it)."""
        return apply_init(model, self, blocks)

    def save_model(self, model, path: str | Path, *, seed: int = 0, n_tokens: int = 16,
                   **which) -> Path:
        """Build seed ``seed``'s model (named as ``sigprop.diagnose`` names it), apply this
        initialization and save its state dict at ``path`` (``torch.save``)."""
        import torch

        from sigprop.measure.source import ModelSource

        skips = [k for k in self.scales if KNOBS[k].kind == "skip"]
        if skips:
            raise DiagnoseError(f"{skips[0]} changes the forward pass (a hook dividing each "
                                "branch by α), which a state dict cannot carry: apply_init it "
                                "to the model you train")
        source = ModelSource.of(model, n_tokens=n_tokens, **which)
        built = apply_init(source.build(seed), self, source.block_path)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(built.state_dict(), path)
        return path

    def knob_values(self) -> list[str]:
        """Each knob's value in words: 'mlp_input × 0.42', 'forget_bias +1.56',
        'branch_gamma = 0.34' (by the knob's kind)."""
        return [_knob_value(name, value) for name, value in self.scales.items()]

    def verdict(self) -> str:
        """The knob values, the totals before and after, and whether the targets were met."""
        values = ", ".join(self.knob_values())
        jac = "log_jac_L" if self.gradient == "raw" else "log_jac_norm_L"
        totals = {when: f"({_signed(row.get('log_gap_L'))}, {_signed(row.get(jac))})"
                  for when, row in (("before", self.before), ("after", self.after))}
        outcome = (self.reason[0].upper() + self.reason[1:] if self.reached else
                   f"Closest reachable: {self.reason}")
        return (f"{values or 'no change'}: (L·λ_a, L·λ_g) from {totals['before']} to "
                f"{totals['after']} over {self.depth} layers. {outcome}")

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v:.4g}" for k, v in self.scales.items())
        return (f"CriticalInit({values}, reached={self.reached}, "
                f"log_gap_L={_signed(self.after.get('log_gap_L'))}, "
                f"log_jac_L={_signed(self.after.get('log_jac_L'))})")

    def to_json(self) -> dict:
        return {
            "before": self.before, "after": self.after, "scales": self.scales,
            "evaluations": self.evaluations, "seconds": round(self.seconds, 2),
            "reached": self.reached, "reason": self.reason, "meaning": self.meaning,
            "family": self.family, "gradient": self.gradient,
            "constraint": self.constraint,
            "knobs": {name: {"kind": KNOBS[name].kind, "summary": KNOBS[name].summary,
                             "parameters": self.parameters[name]} for name in self.scales},
            "model": self.model, "depth": self.depth, "input": self.input, "format": FORMAT,
            "verdict": self.verdict(),
            "warm_start": self.warm_start, "path": self.path,
        }

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path


def load_init(source: str | Path | dict | CriticalInit) -> CriticalInit:
    """A ``CriticalInit`` from its JSON file or dict (as written by ``write``)."""
    if isinstance(source, CriticalInit):
        return source
    if not isinstance(source, dict):
        try:
            source = json.loads(Path(source).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise DiagnoseError(f"cannot read the initialization file {source}: {error}") from None
    if source.get("format") != FORMAT or not isinstance(source.get("scales"), dict):
        raise DiagnoseError("not a sigprop initialization file (written by `sigprop init --out`)")
    check_knobs(list(source["scales"]))
    return CriticalInit(
        scales={k: float(v) for k, v in source["scales"].items()},
        parameters={k: v["parameters"] for k, v in source["knobs"].items()},
        before=source["before"], after=source["after"], evaluations=source["evaluations"],
        seconds=source["seconds"], reached=source["reached"], reason=source["reason"],
        constraint=source["constraint"], model=source["model"], depth=source["depth"],
        input=source["input"], path=source.get("path", []),
        warm_start=source.get("warm_start"), gradient=source.get("gradient", "raw"),
        family=source.get("family", "transformer"), meaning=source.get("meaning", ""),
    )


def apply_init(model: nn.Module, init: str | Path | dict | CriticalInit,
               blocks: str | None = None) -> nn.Module:
    """Change a freshly initialized ``model`` in place by a critical initialization (its JSON
    file, dict or ``CriticalInit``) and return it.

    The model must have the blocks and parameters the initialization was found on: each knob
    must change exactly the parameter names it recorded (``DiagnoseError`` otherwise). A
    recurrent network may be given as the nn.RNN/LSTM/GRU itself or unrolled (``Unrolled``):
    the names are those inside the recurrent module. Apply it once, to a model at its
    framework's default initialization (factors and shifts add up when applied twice).
    """
    init = load_init(init)
    return apply_scales(model, init.scales, init.parameters, blocks)


def apply_scales(model: nn.Module, scales: dict[str, float], parameters: dict[str, list[str]],
                 block_path: str | None = None) -> nn.Module:
    """Change each knob's parameters of ``model`` by its value in place, after checking that
    the knob finds exactly the recorded ``parameters`` in this model: the same blocks, the same
    parameter names inside each (``Slot.key``), so an initialization found on a stack of
    blocks applies to a model built around that stack. (Files written before keys were
    block-relative recorded full names, which still match the model they were found on.)"""
    slots = knob_slots(model, None, block_path, check_knobs(list(scales)))
    for knob, found in slots.items():
        names = sorted({slot.key for slot in found})
        if names != parameters[knob] and sorted({s.name for s in found}) != parameters[knob]:
            raise DiagnoseError(
                f"knob {knob!r} changes {len(names)} parameters of this model ({names[:2]} …) but "
                f"{len(parameters[knob])} of the model the initialization was found on "
                f"({parameters[knob][:2]} …); apply it to the same architecture"
            )
    apply_slots(model, slots, scales)
    return model


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _knob_value(name: str, value: float) -> str:
    """'mlp_input × 0.42', 'forget_bias +1.56', 'branch_gamma = 0.34' by the knob's kind."""
    kind = KNOBS[name].kind
    if kind == "shift":
        return f"{name} {value:+.4g}"
    return f"{name} {'=' if kind in ('set', 'skip') else '×'} {value:.4g}"


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"
