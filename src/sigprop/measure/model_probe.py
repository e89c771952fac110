"""One model, one seed: its per-layer geometry, Jacobian norm and collapsed-state spread from a
single forward-mode pass (``diagnose`` runs this per seed; ``sigprop.init`` reruns it after every
rescaling of the same model).

The pass stacks P + 1 members along the batch axis of the hidden state entering block 0:

* members 0 … P − 1: the model's own X_0 (its embeddings of the seed's inputs) with the
  tangents v_k, P probes uniform on the sphere |v|² = n d (``sphere_probes``), so that
  log_jac_l = log(mean_k |J_l v_k|² / (n d)) is the Hutchinson estimate of
  log(‖∂X_l/∂X_0‖_F² / (n d));
* member P: the collapsed state 1 xᵀ (|x|² = q_in d, q_in the mean squared norm of X_0 per
  width) with a token-mean-zero tangent ⊥ x, giving log D_l, the growth of 1 − ρ near collapse
  (``collapse.py``), D_0 = 1.

Members never mix (a transformer block treats every batch row alone), so this is P + 1
independent jvp passes at the cost of about one: the per-layer Python overhead of a framework
model dominates at these sizes. A model that cannot take a batch of several rows falls back to
one pass per member, with identical results.

Other families (``families.py``) read their hidden states as tokens through a layout: the
spatial positions of a feature map, the copies of an unrolled RNN, the nodes of a graph. Every
quantity is computed on the tokens of layer l at that layer's own shape; probes, the collapsed
state and its tangent are drawn as tokens and mapped to the model's layout. log_jac is
log(mean_k |J_l v_k|² / numel(X_0)) with |v_k|² = numel(X_0) (numel per member), the formula
above: log(‖J_l‖_F² / numel(X_0)) is the per-entry gain of back-propagated gradients (a loss
gradient with i.i.d. entries of variance s² at X_l arrives at X_0 with per-entry variance
s² ‖J_l‖_F² / numel(X_0)), whatever the shape of X_l. (Dividing by numel(X_l) instead would add
log 2 at every ResNet stage that halves the number of entries.)
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from sigprop.measure.blocks import BlockFunction, DiagnoseError, Run, find_blocks
from sigprop.measure.collapse import angle_spread, project_differences
from sigprop.measure.ensemble import stream_seed
from sigprop.measure.families import IMAGE_SIZE, detect_family, family_setup
from sigprop.measure.geometry import simplex_tokens, token_geometry
from sigprop.measure.trajectory import sphere_probes

PRECISION = 1e-12   # |P T| / |T| below this: token differences drown in rounding
DRIFT = 1e-6        # 1 − ρ of the collapsed state above this: no longer collapsed
NOT_INVARIANT = 1e-3  # ... and above this: the collapsed line is not invariant (no λ_a at all)


def build_model(factory: Callable[[int], nn.Module], seed: int,
                device: torch.device = torch.device("cpu")) -> nn.Module:
    """``factory(seed)`` with torch's global generator seeded by ``seed`` (the caller's random
    state restored after), in float64, eval mode, without gradients, on ``device``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(seed)
    if not isinstance(model, nn.Module):
        raise DiagnoseError(f"the factory returned a {type(model).__name__}, not a torch.nn.Module")
    config = getattr(model, "config", None)
    if hasattr(config, "use_cache"):
        config.use_cache = False  # no key/value cache: one pass, nothing kept
    return model.to(device=device, dtype=torch.float64).eval().requires_grad_(False)


class ModelProbe:
    """The measurements of one built model on the inputs and probes of one seed.

    ``measure()`` reads the model's current parameters, so the model may be rescaled in place
    between calls (``sigprop.init``). ``width``, when given, must be the model's hidden size.
    """

    def __init__(self, model: nn.Module, seed: int, *, n_tokens: int, n_probes: int,
                 width: int | None = None, block_path: str | None = None,
                 run: Run | None = None, family: str | None = None,
                 image_size: int = IMAGE_SIZE) -> None:
        self.model, self.seed, self.n_tokens, self.n_probes = model, seed, n_tokens, n_probes
        self.family = detect_family(model, family)
        self.path, blocks = find_blocks(model, block_path)
        self.blocks = list(blocks)
        self.layout, self._run, nodes = family_setup(model, self.family, self.blocks, width,
                                                     run, image_size)
        if nodes is not None:
            self.n_tokens = nodes  # a graph's tokens are its nodes
        self._width = width if self.family == "transformer" else None
        self._batched = True

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def measure(self) -> dict:
        """{"q", "p", "rho", "one_minus_rho", "effective_rank", "cos_min", "cos_max",
        "log_jac", "log_jac_norm", "log_spread", "departure", "departure_stage"}: arrays over
        l = 0..L (``departure_stage``: sin²∠(X_l, X_s), X_s the first state of l's stage, the run
        of layers of X_l's shape; ``departure`` where the shape never changes); "width";
        "warnings"."""
        warnings: list[str] = list(self.layout.prepare(self.model, self.seed))
        layout = self.layout
        with BlockFunction(self.model, self.blocks, self._run, n_tokens=self.n_tokens,
                           seed=self.seed) as function:
            x0 = self._natural_input(function)
            tokens0 = layout.to_tokens(x0)
            collapsed, difference = self._collapsed(tokens0)
            probes = sphere_probes(self.n_probes, *tokens0.shape[1:],
                                   seed=stream_seed(self.seed, "probes")).to(x0)
            probes = layout.from_tokens(probes, x0)
            collapsed, difference = layout.from_tokens(collapsed, x0), layout.from_tokens(
                difference, x0)
            if layout.separate_collapse:
                states, tangents = self._propagate(
                    function, x0.expand(self.n_probes, *x0.shape[1:]).contiguous(), probes)
                with layout.collapse_mode():
                    c_states, c_tangents = self._propagate(function, collapsed, difference)
                states = [torch.cat(pair) for pair in zip(states, c_states)]
                tangents = [torch.cat(pair) for pair in zip(tangents, c_tangents)]
            else:
                states, tangents = self._propagate(
                    function,
                    torch.cat([x0.expand(self.n_probes, *x0.shape[1:]), collapsed]),
                    torch.cat([probes, difference]),
                )
        states = [layout.to_tokens(s) for s in states]
        tangents = [layout.to_tokens(t) for t in tangents]
        natural = [s[:1] for s in states]
        sq_norms = [t[:-1].square().sum((-2, -1)) for t in tangents]  # per layer: (P,)
        log_jac = np.array([float(torch.log(sq.mean(-1) / natural[0].numel()))
                            for sq in sq_norms])
        directions = torch.stack([_direction_sq_norm(s[:1], t[:-1]) for s, t in zip(states, tangents)])
        log_jac_norm = torch.log(directions.mean(-1) / directions[0].mean()).cpu().numpy()
        if not np.all(np.isfinite(log_jac)):
            warnings.append("Warning: the Jacobian probes over- or underflowed float64 "
                            "(|log_jac| > 700); λ_g is not defined.")
        few = [l for l, x in enumerate(natural) if x.shape[-2] < 2]
        if few:
            warnings.append(f"Warning: layers {few} have fewer than 2 {layout.nouns.token}s: no "
                            "token geometry (ρ, 1 − ρ, λ_a) there; use a larger input.")
        geometry = [_geometry(x) for x in natural]
        departure = np.array([float(_departure(x, natural[0])) for x in natural])
        starts = [next(s for s in range(l + 1) if all(x.shape == natural[l].shape
                                                       for x in natural[s:l + 1]))
                  for l in range(len(natural))]
        departure_stage = np.array([float(_departure(x, natural[s]))
                                    for x, s in zip(natural, starts)])
        log_spread = _log_spread([s[-1:] for s in states], [t[-1:] for t in tangents], warnings)
        return {**{key: np.array([g[key] for g in geometry]) for key in geometry[0]},
                "log_jac": log_jac, "log_jac_norm": log_jac_norm, "log_spread": log_spread,
                "departure": departure, "departure_stage": departure_stage,
                "width": tokens0.shape[-1],
                "tokens": [int(x.shape[-2]) for x in natural],
                "widths": [int(x.shape[-1]) for x in natural],
                "warnings": warnings}

    def _natural_input(self, function: BlockFunction) -> Tensor:
        x0 = function.natural_input()
        if self._width is not None and x0.shape[-1] != self._width:
            raise DiagnoseError(f"width {self._width} does not match the model: its blocks "
                                f"receive hidden states of width {x0.shape[-1]}")
        if self.family == "convolutional":
            if x0.ndim != 4 or x0.shape[0] != 1:
                raise DiagnoseError(f"block 0 received a feature map of shape "
                                    f"{tuple(x0.shape)}; expected (1, C, H, W)")
        elif x0.ndim != 3 or x0.shape[0] != 1 or x0.shape[1] != self.n_tokens:
            raise DiagnoseError(f"block 0 received hidden states of shape {tuple(x0.shape)}; "
                                f"expected (1, n_tokens = {self.n_tokens}, width)")
        return x0

    def _collapsed(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """1 xᵀ with |x|² = q_in d, and a unit-spread token-mean-zero tangent ⊥ x."""
        width = x0.shape[-1]
        q_in = float(token_geometry(x0)["q"].mean())
        x = math.sqrt(q_in) * simplex_tokens(1, width, 1.0, 0.0, dtype=x0.dtype,
                                             seed=stream_seed(self.seed, "collapsed"))
        x = x.to(x0.device)
        generator = torch.Generator().manual_seed(stream_seed(self.seed, "difference"))
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        tangent = project_differences(noise, x[0])
        tangent = tangent / torch.sqrt(angle_spread(tangent, x[0]).mean())
        return x.expand_as(x0).contiguous(), tangent

    def _propagate(self, function: BlockFunction, x: Tensor, tangent: Tensor
                   ) -> tuple[list[Tensor], list[Tensor]]:
        """All members in one pass; one pass per member for a model that rejects the batch."""
        if self._batched:
            try:
                return function.propagate(x, tangent)
            except (RuntimeError, DiagnoseError) as error:
                if "forward-mode derivative" in str(error):
                    raise
                self._batched = False
        passes = [function.propagate(x[k:k + 1], tangent[k:k + 1]) for k in range(len(x))]
        return ([torch.cat(layer) for layer in zip(*(p[0] for p in passes))],
                [torch.cat(layer) for layer in zip(*(p[1] for p in passes))])


def _log_spread(states: list[Tensor], tangents: list[Tensor], warnings: list[str]) -> np.ndarray:
    """log D_l of the collapsed member, with warnings on overflow, rounding and drift."""
    log_spread, lowest, drift = [], math.inf, 0.0
    for state, t in zip(states, tangents):
        if state.shape[-2] < 2:  # one token: no differences
            log_spread.append(math.nan)
            continue
        token = state.mean(-2)
        differences = project_differences(t, token)
        log_spread.append(float(torch.log(angle_spread(differences, token).mean())))
        lowest = min(lowest, float(differences.norm() / t.norm()))
        drift = max(drift, float(token_geometry(state)["one_minus_rho"].max()))
    if not np.all(np.isfinite(log_spread)) and all(s.shape[-2] >= 2 for s in states):
        warnings.append("Warning: near collapse the token differences over- or underflowed "
                        "float64 (|log D| > 700); λ_a is not defined.")
    if lowest < PRECISION:
        warnings.append(f"Warning: near collapse the token differences fell to {lowest:.1g} of the "
                        "tangent (rounding limits λ_a).")
    if drift > NOT_INVARIANT:
        warnings.append(f"Warning: the collapsed state does not stay collapsed (1 − ρ up to "
                        f"{drift:.1g}): either the network does not keep identical tokens "
                        "identical (in a graph network, an activation that is not positively "
                        "homogeneous, such as tanh, moves the smooth state off its line) or a "
                        "strongly chaotic network amplified rounding; λ_a is not defined.")
        return np.full(len(log_spread), math.nan)
    if drift > DRIFT:
        warnings.append(f"Warning: rounding pushed the collapsed state off the line (1 − ρ up to "
                        f"{drift:.1g}); λ_a was measured away from exact collapse.")
    return np.array(log_spread)


def _direction_sq_norm(x: Tensor, tangents: Tensor) -> Tensor:
    """Σ_i d |P⊥_i T_i|² / |x_i|² per tangent: the squared tangent of the token directions
    x_i / |x_i| · sqrt(d), what a final RMSNorm passes on (P⊥_i removes the part along x_i)."""
    norms_sq = x.square().sum(-1, keepdim=True)  # (1, n, 1)
    along = (tangents * x).sum(-1, keepdim=True)
    perpendicular = tangents.square().sum(-1, keepdim=True) - along.square() / norms_sq
    return (x.shape[-1] * perpendicular / norms_sq).sum((-2, -1))


def _departure(x: Tensor, x0: Tensor) -> Tensor:
    """sin² of the angle between X_l and X_0 as vectors in R^{n d}: 0 for the identity map,
    the share of X_l's energy that X_0 does not explain; NaN when the shapes differ (a
    convolutional network's later stages)."""
    if x.shape != x0.shape:
        return torch.tensor(math.nan)
    cosine = (x * x0).sum() / (x.norm() * x0.norm())
    return 1.0 - cosine.square()


def _geometry(x: Tensor) -> dict[str, float]:
    """token_geometry plus effective rank and extreme pairwise cosines, averaged over batch;
    all NaN for fewer than 2 tokens."""
    if x.shape[-2] < 2:
        return {key: math.nan for key in ("q", "p", "rho", "one_minus_rho", "effective_rank",
                                           "cos_min", "cos_max")}
    summary = {key: float(value.mean()) for key, value in token_geometry(x).items()}
    gram = x @ x.mT / x.shape[-1]
    eigenvalues = torch.linalg.eigvalsh(gram).clamp(min=0.0)
    weights = eigenvalues / eigenvalues.sum(-1, keepdim=True)
    entropy = -torch.special.xlogy(weights, weights).sum(-1)
    norms = torch.sqrt(torch.diagonal(gram, dim1=-2, dim2=-1))
    cosine = gram / (norms[..., :, None] * norms[..., None, :])
    off_diagonal = ~torch.eye(x.shape[-2], dtype=torch.bool, device=x.device)
    summary["effective_rank"] = float(torch.exp(entropy).mean())
    summary["cos_min"] = float(cosine[..., off_diagonal].min(-1).values.mean())
    summary["cos_max"] = float(cosine[..., off_diagonal].max(-1).values.mean())
    return summary
