"""The seeds' models of one architecture, rescaled by knob factors and measured again and again.

One evaluation at knob values s = (s_k) restores every model's initial parameters, changes each
knob's slots by s_k (× s_k, + s_k or = s_k by the knob's kind, ``knobs.py``) and runs each
seed's batched probe (``ModelProbe``). It returns the whole-model totals, averaged over seeds,

    log_gap_L = log D_L     (growth of 1 − ρ near collapse, the limit ρ0 → 1),
    log_jac_L = log(‖∂X_L/∂X_0‖_F² / (n d))   (from the model's own embeddings),
    log_jac_norm_L   (the same for the token directions, what a final norm passes on),
    departure = sin²∠(X_L, X_0)   (0 for the identity map),

where a convolutional network changes shape between stages, the departure is that of its
stages (runs of layers of one shape) together, 1 − Π_stages cos²∠(X_end, X_start): the blocks
with an identity shortcut are the ones that can become the identity (``whole_departure``);

which are L·λ_a^(L), L·λ_g^(L) and the distance from the trivial answer. Rescaling from the
stored originals makes every evaluation exactly what a fresh model with the factors applied
gives (``apply_init`` on a new build, then ``diagnose``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from sigprop.init.knobs import KNOBS, Knob, Slot, change_slots, knob_slots
from sigprop.measure.blocks import Run
from sigprop.measure.families import IMAGE_SIZE
from sigprop.measure.model_probe import ModelProbe


@dataclass(frozen=True)
class Evaluation:
    """Seed means at one set of factors (``scales``: knob name → factor). ``gradient`` names
    the gradient total the search targets: "raw" (log_jac_L) or "normalized"
    (log_jac_norm_L)."""

    scales: dict[str, float]
    log_gap_L: float
    log_jac_L: float
    log_jac_norm_L: float
    departure: float
    gradient: str = "raw"

    @property
    def residual(self) -> np.ndarray:
        jac = self.log_jac_L if self.gradient == "raw" else self.log_jac_norm_L
        return np.array([self.log_gap_L, jac])

    def to_json(self) -> dict:
        return {"scales": self.scales, "log_gap_L": self.log_gap_L,
                "log_jac_L": self.log_jac_L, "log_jac_norm_L": self.log_jac_norm_L,
                "departure": self.departure}


class ScaledEnsemble:
    """Built models (one per seed) with their original parameters and knob slots."""

    def __init__(self, models: Sequence[nn.Module], seeds: Sequence[int], knobs: tuple[Knob, ...],
                 *, n_tokens: int, n_probes: int, block_path: str | None = None,
                 run: Run | None = None, gradient: str = "raw", family: str | None = None,
                 image_size: int = IMAGE_SIZE,
                 on_evaluation: Callable[[Evaluation], None] | None = None) -> None:
        self.models = list(models)
        self.knobs = knobs
        self.probes = [ModelProbe(m, s, n_tokens=n_tokens, n_probes=n_probes,
                                  block_path=block_path, run=run, family=family,
                                  image_size=image_size)
                       for m, s in zip(self.models, seeds)]
        self.slots = [knob_slots(m, p.blocks, p.path, knobs) for m, p in zip(self.models, self.probes)]
        self.originals = [{n: t.detach().clone() for n, t in m.named_parameters()}
                          for m in self.models]
        self.history: list[Evaluation] = []
        self.gradient = gradient
        self._on_evaluation = on_evaluation

    @property
    def depth(self) -> int:
        return self.probes[0].depth

    @property
    def parameter_names(self) -> dict[str, list[str]]:
        """Knob → the parameters it scales (seed 0's model; every seed builds the same), as
        ``Slot.key``: "block index.name inside the block"."""
        return {knob: sorted({slot.key for slot in slots})
                for knob, slots in self.slots[0].items()}

    def evaluate(self, scales: dict[str, float]) -> Evaluation:
        totals = []
        for model, probe, slots, original in zip(self.models, self.probes, self.slots,
                                                  self.originals):
            restore(model, original)
            apply_slots(model, slots, scales)
            result = probe.measure()
            departure = whole_departure(result["departure_stage"][None], result["tokens"],
                                        result["widths"])[0]
            totals.append((result["log_spread"][-1], result["log_jac"][-1],
                           result["log_jac_norm"][-1], departure))
        gap, jac, jac_norm, departure = (float(v) for v in np.mean(totals, axis=0))
        evaluation = Evaluation(dict(scales), gap, jac, jac_norm, departure, self.gradient)
        self.history.append(evaluation)
        if self._on_evaluation is not None:
            self._on_evaluation(evaluation)
        return evaluation


def restore(model: nn.Module, original: dict[str, torch.Tensor]) -> None:
    """Copy the stored initial parameters back into ``model``."""
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            tensor.copy_(original[name])


def apply_slots(model: nn.Module, slots: dict[str, tuple[Slot, ...]],
                scales: dict[str, float]) -> None:
    """Change each knob's slots of ``model`` by its value (× for branch and weight knobs, + for
    shift, = for set), in place."""
    for knob, value in scales.items():
        change_slots(model, slots[knob], KNOBS[knob].kind, value)


def whole_departure(stage: np.ndarray, tokens: Sequence[int], widths: Sequence[int]
                    ) -> np.ndarray:
    """Per seed, 1 − Π over the stages of cos²∠(X_end, X_start), from ``departure_stage``
    (seeds, L + 1) and the tokens and widths per layer (a stage ends where they change); for
    one stage, sin²∠(X_L, X_0) itself."""
    stage = np.asarray(stage, dtype=float)
    shapes = list(zip(tokens, widths))
    ends = [l for l in range(len(shapes)) if l == len(shapes) - 1 or shapes[l + 1] != shapes[l]]
    if len(ends) == 1:
        return stage[:, -1]
    return 1.0 - np.prod(1.0 - stage[:, ends], axis=1)
