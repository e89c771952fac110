"""The arms of the rescue suite: what is done to a network before it trains.

* ``default``: nothing (the framework's own initialization);
* ``sigprop``, ``sigprop-normalized``: ``sigprop.apply_init`` with the network's critical
  initialization, found by ``sigprop.critical_init`` with the raw or the normalized gradient
  target (``sigprop.experiment.rescue.prepare``);
* a published fix (``sigprop.experiment.rescue.fixes``), or ``warmup``: the default with a
  linear learning-rate warm-up over the first ``WARMUP_SHARE`` of the steps;
* ``off-critical``: a control, the critical initialization's multiplicative knobs × ``OFF``
  (weight variances × 16): the same knobs, far from the edge;
* ``reference``: the network's well-conditioned counterpart of the same size.

For a recurrent network every initialization acts on its recurrent layer (``model.rnn``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sigprop.experiment.rescue import fixes
from sigprop.experiment.rescue.networks import Network
from sigprop.init.knobs import KNOBS
from sigprop.init.result import CriticalInit, apply_init, apply_scales

OFF = 4.0  # the off-critical control's factor on the critical knobs


@dataclass(frozen=True)
class Arm:
    """One arm: its name, what kind it is and what it does, in words."""

    name: str
    kind: str  # default, sigprop, fix, control, reference
    description: str


GRADIENTS = {"sigprop": "raw", "sigprop-normalized": "normalized"}
FIX_DESCRIPTIONS = {
    "deepnorm": "DeepNet's DeepNorm: LN(α x + f(x)), α = (2N)^¼, β = (8N)^-¼ gains",
    "admin": "Admin (no profiling): LN(ω x + f(x)), ω = sqrt((n+1)/ln(n+1) − 1), n = 2N",
    "warmup": "the default with linear learning-rate warm-up over 10 % of the steps",
    "rezero": "ReZero: x + α F(x), one α per block from 0",
    "fixup": "Fixup (transformer): output maps 0, fc1 × L^-½, q/k/v × L^-1/6",
    "tfixup": "T-Fixup: v, out, fc × 0.67 N^-¼, embedding std (9N)^-½",
    "dyt": "DyT before each branch, α0 = 0.5",
    "orthogonal": "orthogonal weights σ_w² = 1.05, σ_b² = 2e-5 (critical, dynamical isometry)",
    "he": "He: N(0, 2/fan_in), biases 0",
    "delta-orthogonal": "delta-orthogonal: orthogonal centre tap of gain √2, biases 0",
    "forget-bias": "forget-gate (GRU: update-gate) bias + 1",
    "chrono": "chrono: keep-gate bias ~ log U[1, T − 1] (LSTM: input gate its negative)",
}


def arms_of(network: Network) -> tuple[Arm, ...]:
    """The arms of ``network`` in the report's order."""
    arms = [Arm("default", "default", "the framework's own initialization"),
            Arm("sigprop", "sigprop", "sigprop.critical_init, raw gradient target"),
            Arm("sigprop-normalized", "sigprop", "sigprop.critical_init, normalized gradient "
                                                 "target")]
    arms += [Arm(name, "fix", FIX_DESCRIPTIONS[name]) for name in network.fixes]
    arms.append(Arm("off-critical", "control", f"the critical knobs × {OFF:g} (control)"))
    if network.reference is not None:
        arms.append(Arm("reference", "reference", network.reference_title))
    return tuple(arms)


def prepared(network: Network, arm: str, seed: int, inits: dict[str, CriticalInit]
             ) -> nn.Module:
    """Seed ``seed``'s network for ``arm`` (``inits``: the critical initializations by arm
    name, "sigprop" and "sigprop-normalized"), ready to train."""
    if arm == "reference":
        if network.reference is None:
            raise ValueError(f"{network.name} has no reference network")
        return _seeded(network.reference, seed)
    model = network.model(seed)
    target = model.rnn if network.kind == "recurrent" else model
    if arm in GRADIENTS:
        apply_init(target, inits[arm])
    elif arm == "off-critical":
        init = inits["sigprop"]
        away = {k: v * OFF for k, v in init.scales.items() if KNOBS[k].multiplicative}
        apply_scales(target, away, {k: init.parameters[k] for k in away})
    elif arm == "chrono":
        fixes.chrono(model, network.lag)
    elif arm in fixes.FIXES:
        fixes.FIXES[arm](model)
    elif arm not in ("default", "warmup"):
        raise ValueError(f"unknown arm {arm!r} of {network.name}")
    return model


def warmup_steps(arm: str, steps: int) -> int:
    """The arm's linear warm-up in steps (0 but for ``warmup``)."""
    return max(1, round(fixes.WARMUP_SHARE * steps)) if arm == "warmup" else 0


def _seeded(build, seed: int) -> nn.Module:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
