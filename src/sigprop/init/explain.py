"""What a critical initialization's result says in words: what reaching the targets means per
family (``MEANING``), the constraint and the input geometry, and why a closest point misses.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from sigprop.init.knobs import Knob
from sigprop.init.result import summary

MEANING = {
    "transformer": "over the model's L blocks |L·λ_a^(L)| and |L·λ_g^(L)| are at most {tol:g}: "
                   "near collapse the tokens' differences change by at most e^{tol:g} (they "
                   "neither collapse nor scatter), and gradients neither vanish nor explode "
                   "through the whole model",
    "convolutional": "over the L residual blocks |L·λ_a^(L)| and |L·λ_g^(L)| are at most "
                     "{tol:g}: spatial positions neither merge (loss of spatial information) "
                     "nor scatter, and ‖∂X_L/∂X_0‖² per entry changes by at most e^{tol:g}: "
                     "gradients reach the stem",
    "recurrent": "over the T = L time steps |T·λ_a| and |T·λ_g| are at most {tol:g}: the state "
                 "still tells (without scrambling) where it started T steps ago, and gradients "
                 "through time neither vanish nor explode over the unrolled horizon: long-range "
                 "memory over T steps is available",
    "graph": "over the L message-passing layers |L·λ_a^(L)| and |L·λ_g^(L)| are at most "
             "{tol:g}: node features neither over-smooth nor scatter, and gradients reach the "
             "input features",
}
"""What reaching both targets means, per family (``CriticalInit.meaning``)."""


def advice(family: str, chosen: tuple[Knob, ...], model: nn.Module, after: dict,
            gradient: str, tolerance: float) -> str:
    """What the family's knobs cannot do, and what would (appended to an unreached reason)."""
    names = {k.name for k in chosen}
    gap_missed = abs(after["log_gap_L"] or 0.0) > tolerance
    notes = []
    if family == "graph":
        residual = [getattr(m, "residual", None) for m in model.modules()
                    if hasattr(m, "residual")]
        if gap_missed and not any(residual):
            notes.append(
                "over-smoothing is set by the graph: every layer Â shrinks the nodes' "
                "differences by its spectral gap, and σ_w cannot undo that (for a positively "
                "homogeneous φ such as ReLU, σ_w rescales the features without turning them, "
                "so log_gap_L does not depend on it); the fix is a residual connection "
                "X ← X + φ(Â X W) (sigprop.models.graph.GCN(..., residual=True)), with which "
                "weights becomes the residual branch multiplier")
    if family == "convolutional":
        normalized = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if "conv" in names and normalized:
            notes.append("conv cannot move the totals: every convolution is followed by a "
                         "BatchNorm that divides by the batch's statistics, so its gain cancels")
        if "branch_gamma" in names:
            notes.append("branch_gamma → 0 leaves the stem, the downsampling shortcuts "
                         "(1×1 convolution and BatchNorm) and the final ReLUs, whose own totals "
                         "remain; a smaller branch_gamma also brings the identity-shortcut "
                         "blocks towards the identity (the departure constraint)")
    if family == "recurrent" and gap_missed and "forget_bias" not in names:
        kind = type(getattr(model, "rnn", model)).__name__
        if kind in ("LSTM", "GRU"):
            notes.append(f"an {kind}'s memory is set by the gate that keeps the old state: add "
                         "the forget_bias knob")
    return "; ".join(notes)


def caveat(after: dict, gradient: str, tolerance: float) -> str:
    """Said even when the targets are reached: the normalized gradient target leaves the raw
    gradient total free, and a model without a final norm feels that total in full."""
    raw = after.get("log_jac_L")
    if gradient == "normalized" and raw is not None and abs(raw) > tolerance:
        return (f"note: the raw gradient total log_jac_L is {raw:+.2f}; the normalized target "
                "leaves it free, which a model whose output has no norm feels in full")
    return ""


def missed(after, tolerance: float, gradient: str, min_departure: float) -> str:
    """Why the totals of all seeds miss although the search's seeds met them."""
    departure = summary(after)["departure"]
    if departure is None or departure < min_departure:
        shown = "undefined" if departure is None else f"{departure:.3f}"
        return (f"on all seeds the departure {shown} is below the non-identity minimum "
                f"{min_departure:g}: the blocks are too close to the identity")
    jac = after.log_jac_L if gradient == "raw" else after.log_jac_norm_L
    return (f"on all seeds the totals ({after.log_gap_L.mean:+.3f}, {jac.mean:+.3f}) miss "
            f"±{tolerance:g}, although the searched seeds met it: the seed spread is comparable "
            "to the tolerance (more --search-seeds)")


def input_geometry(family: str, n_tokens: int, seeds: Sequence[int], searched: Sequence[int],
           n_probes: int, diagnosis=None) -> str:
    where = (f"seeds {list(seeds)} (searched on {list(searched)}), {n_probes} probes each")
    n = diagnosis.n_tokens if diagnosis is not None else n_tokens
    if family == "convolutional":
        return ("λ_a^(L): identical spatial positions (ρ0 → 1; circular padding); λ_g^(L): the "
                "stem's feature map of an image of N(0, 1) pixels, BatchNorm at the statistics of "
                f"the seed's batch; {where}")
    if family == "recurrent":
        return ("λ_a^(L): copies started from identical states (ρ0 → 1); λ_g^(L): "
                f"{n} copies from orthogonal initial states, driven by one N(0, 1) input "
                f"sequence; {where}")
    if family == "graph":
        return ("λ_a^(L): the smooth state (every node token equal, ρ0 → 1); λ_g^(L): "
                f"orthogonal node features on the graph's {n} nodes; {where}")
    return (f"λ_a^(L): nearly collapsed tokens (ρ0 → 1) at the embeddings' norm; λ_g^(L): the "
            f"model's embeddings of {n_tokens} random tokens; {where}")


def constraint(knobs, bounds, min_departure, family: str = "transformer") -> str:
    ranges = ", ".join(f"{k.name} ({k.kind}) in [{bounds[k.name][0]:.3g}, {bounds[k.name][1]:.3g}]"
                       for k in knobs)
    shared = "shared by all time steps" if family == "recurrent" else "shared by all blocks"
    departure = ("departure 1 − Π_stages cos²∠(X_end, X_start) over the stages of one shape"
                 if family == "convolutional" else "departure sin²∠(X_L, X_0)")
    values = "factors" if all(k.multiplicative for k in knobs) else "values"
    return f"{values} {ranges}, {shared}; {departure} ≥ {min_departure:g} (the identity has 0)"
