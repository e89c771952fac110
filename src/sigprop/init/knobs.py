"""The knobs of a critical initialization: groups of initial parameters changed by one value.

A knob changes chosen parameters of every block (or, in a recurrent network, the parameters
shared by all time steps) by one value, in place. Four kinds:

* ``branch`` (× s): the last linear map of a residual branch (its weight and bias), so the
  branch's output is multiplied by s exactly: a residual branch multiplier;
* ``weight`` (× s): a weight matrix, i.e. its variance by s²: a weight-variance multiplier
  σ_w² → s² σ_w². The attention maps (query, value) are scaled with their bias, so the map's
  output is multiplied by s exactly; the MLP input map keeps its bias (the pre-activation
  offset σ_b stays);
* ``shift`` (+ t): a bias (or a slice of one) shifted by t, e.g. an LSTM's forget-gate bias;
  t = 0 is the framework's own initialization;
* ``set`` (= v): a parameter that a framework initializes to a constant (a BatchNorm γ) set to
  v, so that a branch initialized at zero (``zero_init_residual``) can be revived;
* ``skip`` (= α ≥ 1): the skip weight of a Post-LN block, LN(α x + f(x)) as DeepNorm sets it
  (Wang et al. 2022). LayerNorm is scale invariant (up to its ε), so LN(α x + f(x)) =
  LN(x + f(x)/α): a forward hook divides each branch's output by α, the same function of the
  same parameters (and, unlike rescaling the branch's weights, the same Adam trajectory). It
  changes the forward pass: ``apply_init`` installs the hooks, and a state dict cannot carry
  them.

Each knob belongs to one family of networks (``sigprop.measure.families``) and is declared
once in ``KNOBS``, with the parameter names it recognizes in the models of that family; the
knobs searched when none is named are declared next to them (``FAMILY_DEFAULTS``):

* transformer (Hugging Face GPT-2 (packed ``c_attn`` as a Conv1D, in × 3d), BERT, Llama,
  ``torch.nn.TransformerEncoderLayer`` (packed ``in_proj_weight``, 3d × in), nanoGPT/timm-style
  blocks (packed ``c_attn``/``qkv`` as nn.Linear), sigprop's own blocks): ``attn_logits``
  (query map: every logit × s; rotary encodings are linear in q, so Llama's too),
  ``attn_values`` (value map: the attention output × s), ``mlp_input`` (the map into the MLP's
  nonlinearity, the gate of a gated MLP; its linear "up" map is only a gain), ``attn_branch``,
  ``mlp_branch`` (the branches' output maps). Default: mlp_input, attn_values.
* convolutional (torchvision/timm ResNets: ``BasicBlock``, ``Bottleneck``): ``branch_gamma``
  (set: γ of the last BatchNorm of every residual branch, ``bn2`` of a BasicBlock, ``bn3`` of
  a Bottleneck; β stays 0, so the branch's output is v × its normalized value), ``conv``
  (weight: every convolution of the blocks, the Kaiming gain; with a BatchNorm after every
  convolution, normalizing by the batch's statistics, it cancels exactly). Default:
  branch_gamma.
* recurrent (nn.RNN, nn.LSTM, nn.GRU; one set of weights for all time steps): ``recurrent``
  (weight: ``weight_hh_l0``, the recurrent matrix), ``input`` (weight: ``weight_ih_l0``),
  ``forget_bias`` (shift: the bias of the gate that keeps the old state, an LSTM's forget gate
  f, rows [H, 2H) of ``bias_ih_l0`` (gates i, f, g, o), or a GRU's update gate z, rows [H, 2H)
  of ``bias_ih_l0`` (gates r, z, n); the gate's total bias b_ih + b_hh shifts by t; not for a
  vanilla nn.RNN). Default: recurrent, input, forget_bias (forget_bias only for an LSTM or a
  GRU).
* graph (GCN layers X ← φ(Â X W), ``sigprop.models.graph``, or any block with a weight
  matrix): ``weights`` (weight: every weight matrix of the layers, σ_w). Default: weights.

A knob lists alternatives in order; in each block the first alternative that matches any
parameter is used (a sigprop attention without output map has its values as the branch's last
map; a Bottleneck's bn3 before a BasicBlock's bn2). Names are matched against the parameter's
dotted name inside the block (inside the nn.RNNBase for a recurrent network), and a target may
also require the type of the module owning the parameter and a number of dimensions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from sigprop.measure.blocks import DiagnoseError, find_blocks

KnobKind = Literal["branch", "weight", "shift", "set", "skip"]
MULTIPLICATIVE = ("branch", "weight")
ANY = "any"  # the family of knobs that fit the blocks of every family


@dataclass(frozen=True)
class Target:
    """Parameters whose dotted name inside a block matches ``pattern``; for a packed matrix,
    ``part`` = (k, parts): the k-th of ``parts`` equal slices along the output axis. ``owner``:
    the module holding the parameter must be an instance of one of these types; ``min_ndim``:
    the parameter must have at least this many dimensions."""

    pattern: str
    part: tuple[int, int] | None = None
    owner: tuple[type, ...] | None = None
    min_ndim: int = 0
    module: bool = False  # match the block's submodules by name (a skip knob), not parameters
    when: Callable[[nn.Module], bool] | None = None  # the block must pass this test


@dataclass(frozen=True)
class Knob:
    """One value shared by the matching parameters of every block (of the whole recurrent
    network for the recurrent family)."""

    name: str
    kind: KnobKind
    summary: str
    alternatives: tuple[tuple[Target, ...], ...]
    family: str = "transformer"

    @property
    def scope(self) -> str:
        """"block": matched in every block; "model": matched once in the whole (recurrent)
        network, whose weights every time step shares."""
        return "model" if self.family == "recurrent" else "block"

    @property
    def multiplicative(self) -> bool:
        return self.kind in MULTIPLICATIVE

    @property
    def neutral(self) -> float:
        """The value that leaves a parameter unchanged (a ``set`` knob has none: nan)."""
        return {"branch": 1.0, "weight": 1.0, "shift": 0.0, "skip": 1.0}.get(self.kind,
                                                                             float("nan"))


def _packed(name: str, k: int) -> Target:
    return Target(rf"(^|\.){name}\.(weight|bias)$", (k, 3))


_QKV = ("c_attn", "qkv", "in_proj")


def _post_ln_encoder_layer(block: nn.Module) -> bool:
    return isinstance(block, nn.TransformerEncoderLayer) and not block.norm_first


def _bert_layer(block: nn.Module) -> bool:
    """A Hugging Face BERT layer (Post-LN: LN(x + dense(…)) after each branch)."""
    return type(block).__name__ == "BertLayer"
_BATCH_NORM = (nn.modules.batchnorm._BatchNorm,)

KNOBS: dict[str, Knob] = {knob.name: knob for knob in (
    # ------------------------------------------------------------------ transformer
    Knob("attn_logits", "weight", "query map (weight and bias): every attention logit × s", (
        (*(_packed(p, 0) for p in _QKV[:2]), Target(r"(^|\.)in_proj_(weight|bias)$", (0, 3)),
         Target(r"(^|\.)(q_proj|query)\.(weight|bias)$"), Target(r"(^|\.)W_Q$")),)),
    Knob("attn_values", "weight", "value map (weight and bias): the attention output × s", (
        (*(_packed(p, 2) for p in _QKV[:2]), Target(r"(^|\.)in_proj_(weight|bias)$", (2, 3)),
         Target(r"(^|\.)(v_proj|value)\.(weight|bias)$"), Target(r"(^|\.)W_V$")),)),
    Knob("mlp_input", "weight", "MLP map into the nonlinearity (the gate of a gated MLP): "
         "weights × s", (
        (Target(r"(^|\.)(c_fc|fc1|linear1|gate_proj|w1)\.weight$"),
         Target(r"^intermediate\.dense\.weight$"), Target(r"(^|\.)W_1$")),)),
    Knob("attn_branch", "branch", "attention branch output (output map): branch × s", (
        (Target(r"(^|\.)(attn|self_attn|attention)\.(c_proj|proj|out_proj|o_proj)\.(weight|bias)$"),
         Target(r"(^|\.)attention\.output\.dense\.(weight|bias)$"),
         Target(r"(^|\.)o_proj\.(weight|bias)$"), Target(r"(^|\.)W_O$")),
        (Target(r"(^|\.)W_V$"),))),
    Knob("skip", "skip", "skip weight α ≥ 1 of a Post-LN block, LN(α x + f(x)) as in DeepNorm: "
         "each branch's output ÷ α, a forward hook", (
        (Target(r"^dropout[12]$", module=True, when=_post_ln_encoder_layer),
         Target(r"^(attention\.output|output)\.dense$", module=True, when=_bert_layer)),)),
    Knob("mlp_branch", "branch", "MLP branch output (output map): branch × s", (
        (Target(r"(^|\.)mlp\.(c_proj|fc2|down_proj|w2)\.(weight|bias)$"),
         Target(r"(^|\.)(linear2|down_proj)\.(weight|bias)$"),
         Target(r"^output\.dense\.(weight|bias)$"), Target(r"(^|\.)W_2$")),)),
    # ------------------------------------------------------------------ convolutional
    Knob("branch_gamma", "set", "γ of the last BatchNorm of every residual branch (bn2 of a "
         "BasicBlock, bn3 of a Bottleneck) set to v: the branch's output is v × its "
         "normalized value", (
        (Target(r"^bn3\.weight$", owner=_BATCH_NORM),),
        (Target(r"^bn2\.weight$", owner=_BATCH_NORM),)), "convolutional"),
    Knob("conv", "weight", "every convolution of the blocks (the Kaiming gain): weights × s; "
         "cancelled exactly by a BatchNorm after it", (
        (Target(r"(^|\.)weight$", owner=(nn.Conv2d,)),),), "convolutional"),
    # ------------------------------------------------------------------ recurrent
    Knob("recurrent", "weight", "the recurrent matrix weight_hh_l0: σ_w × s", (
        (Target(r"^weight_hh_l0$", owner=(nn.RNNBase,)),),), "recurrent"),
    Knob("input", "weight", "the input matrix weight_ih_l0: input drive × s", (
        (Target(r"^weight_ih_l0$", owner=(nn.RNNBase,)),),), "recurrent"),
    Knob("forget_bias", "shift", "bias of the gate that keeps the old state (an LSTM's forget "
         "gate f, a GRU's update gate z; rows [H, 2H) of bias_ih_l0): + t", (
        (Target(r"^bias_ih_l0$", (1, 4), owner=(nn.LSTM,)),
         Target(r"^bias_ih_l0$", (1, 3), owner=(nn.GRU,))),), "recurrent"),
    # ------------------------------------------------------------------ any family
    Knob("weights", "weight", "every weight matrix of the blocks (a Linear, a convolution, a "
         "graph convolution's W): σ_w × s", (
        (Target(r"(^|\.)(weight|W)$", min_ndim=2),),), ANY),
    Knob("biases", "weight", "every bias of the blocks' Linear and convolution layers: σ_b × s",
         ((Target(r"(^|\.)bias$", owner=(nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)),),), ANY),
)}

FAMILY_DEFAULTS: dict[str, tuple[str, ...]] = {
    "transformer": ("mlp_input", "attn_values"),
    "convolutional": ("branch_gamma",),  # conv cancels through BatchNorm (docs/init_families.md)
    "recurrent": ("recurrent", "input", "forget_bias"),  # forget_bias: LSTM and GRU only
    "graph": ("weights",),
}
"""The knobs searched when none is named, per family; a default that matches nothing in the
model (forget_bias of a vanilla nn.RNN) is left out."""

POST_LN_DEFAULTS = ("skip", "mlp_input", "attn_values")
"""The knobs searched in Post-LN blocks (where the skip knob fits): their skip weight α
(DeepNorm's knob) with the two weight knobs. At 64 blocks both α and weaker attention values
(× 0.15) meet the targets, but only α trains (docs/rescue.md): the exponents describe the
forward and backward pass at fixed parameters, not how much a parameter update moves a Post-LN
output, which α tempers; the weight knobs stay for blocks too close to the identity, which α
cannot move away from it."""

PLAIN_DEFAULTS = ("weights", "biases")
"""The knobs searched when none of the family's defaults matches the blocks: plain layers
h ← φ(W h + b) (a deep MLP's ``nn.Linear``, a plain CNN's ``nn.Conv2d``), whose σ_w and σ_b
set both exponents (docs/theory.md §11)."""

FAMILY_WORDS = {"transformer": "a transformer", "convolutional": "a convolutional network",
                "recurrent": "a recurrent network", "graph": "a graph network"}


def family_knobs(family: str) -> tuple[str, ...]:
    """The names of the knobs of ``family`` and of every family, in declaration order."""
    return tuple(name for name, knob in KNOBS.items() if knob.family in (family, ANY))


@dataclass(frozen=True)
class Slot:
    """One tensor (or a slice of one) that a knob changes: ``name`` is its dotted name in the
    knob root (``knob_root``); ``axis``/``index``/``parts`` pick the slice (``parts`` = 1: all
    of it). ``key`` is what an initialization records: "i.name" with i the block's index and
    name the parameter's name inside the block (the same in every model built of these blocks:
    a stack, or a language model around it), or the name in the root for the knobs of a
    recurrent network."""

    name: str
    axis: int = 0
    index: int = 0
    parts: int = 1
    key: str = ""

    def view(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.parts == 1:
            return tensor
        size = tensor.shape[self.axis] // self.parts
        return tensor.narrow(self.axis, self.index * size, size)


def check_knobs(names: tuple[str, ...] | list[str], family: str | None = None
                ) -> tuple[Knob, ...]:
    """The declared knobs of these names, in order; ``DiagnoseError`` (one line naming the
    knobs available, of ``family`` when given) for unknown, foreign or repeated ones."""
    available = family_knobs(family) if family is not None else tuple(KNOBS)
    unknown = [n for n in names if n not in available]
    if unknown:
        whose = f" (the knobs of {FAMILY_WORDS.get(family, family)})" if family else ""
        raise DiagnoseError(f"knobs must be among {', '.join(available)}{whose}; got "
                            f"{', '.join(map(str, unknown))}")
    if len(set(names)) != len(names) or not names:
        raise DiagnoseError(f"knobs must be distinct and at least one; got {list(names)}")
    return tuple(KNOBS[n] for n in names)


def knob_root(model: nn.Module) -> nn.Module:
    """The module whose parameter names the knobs record: the nn.RNNBase inside a recurrent
    network unrolled by diagnose (``Unrolled``), else the model itself."""
    from sigprop.models.recurrent import Unrolled

    return model.rnn if isinstance(model, Unrolled) else model


def knob_slots(model: nn.Module, blocks: list[nn.Module] | None, block_path: str | None,
               knobs: tuple[Knob, ...]) -> dict[str, tuple[Slot, ...]]:
    """The slots of every knob in every block of ``model`` (in the whole recurrent network for
    recurrent knobs); ``blocks`` None: found from ``block_path`` when a knob needs them.

    Raises ``DiagnoseError`` when a knob matches nothing in some block (naming the block's
    parameters), or when two knobs would change the same tensor slice.
    """
    root = knob_root(model)
    full_names = {id(p): name for name, p in root.named_parameters()}
    full_names |= {id(m): name for name, m in root.named_modules()}
    if blocks is None and any(k.scope == "block" for k in knobs):
        _, container = find_blocks(model, block_path)
        blocks = list(container)
    slots: dict[str, tuple[Slot, ...]] = {}
    for knob in knobs:
        groups = ([(f"block {i}", b) for i, b in enumerate(blocks)] if knob.scope == "block"
                  else [("the network", root)])
        found: list[Slot] = []
        for position, (label, group) in enumerate(groups):
            matched = _match(knob, group)
            if not matched:
                names = [name for name, _ in group.named_parameters()]
                raise DiagnoseError(
                    f"knob {knob.name!r} ({knob.summary}) matches no parameter of {label} "
                    f"({type(group).__name__}: {', '.join(names) or 'no parameters'})"
                )
            for parameter, part, owner, inside in matched:
                full = full_names[id(parameter)]
                key = f"{position}.{inside}" if knob.scope == "block" else full
                found.append(_slot(full, part, parameter, owner, key))
        slots[knob.name] = tuple(dict.fromkeys(found))
    _check_disjoint(slots)
    return slots


def scale_slots(model: nn.Module, slots: tuple[Slot, ...], factor: float) -> None:
    """Multiply every slot by ``factor`` in place (no gradient is recorded)."""
    change_slots(model, slots, "weight", factor)


def change_slots(model: nn.Module, slots: tuple[Slot, ...], kind: KnobKind, value: float) -> None:
    """Apply a knob of ``kind`` with ``value`` to every slot in place: × value (branch,
    weight), + value (shift), = value (set), or the skip weight α = value (skip: the slots are
    the modules each branch's output leaves through)."""
    if kind == "skip":
        modules = dict(knob_root(model).named_modules())
        for slot in slots:
            divide_output(modules[slot.name], value)
        return
    parameters = dict(knob_root(model).named_parameters())
    with torch.no_grad():
        for slot in slots:
            view = slot.view(parameters[slot.name])
            if kind in MULTIPLICATIVE:
                view.mul_(value)
            elif kind == "shift":
                view.add_(value)
            else:
                view.fill_(value)


def divide_output(module: nn.Module, alpha: float) -> None:
    """Make ``module``'s output ÷ ``alpha`` (a forward hook, installed once; later calls change
    α)."""
    module._sigprop_skip = float(alpha)
    if getattr(module, "_sigprop_skip_hook", None) is None:
        module._sigprop_skip_hook = module.register_forward_hook(
            lambda m, inputs, output: output / m._sigprop_skip)


def slot_mean(model: nn.Module, slots: tuple[Slot, ...]) -> float:
    """The mean entry of the slots (the framework's own value of a ``set`` knob)."""
    parameters = dict(knob_root(model).named_parameters())
    values = torch.cat([slot.view(parameters[slot.name]).detach().reshape(-1).double()
                        for slot in slots])
    return float(values.mean())


def _match(knob: Knob, group: nn.Module) -> list[tuple[nn.Parameter, tuple[int, int] | None,
                                                    nn.Module, str]]:
    """(parameter, part, owning module, name in ``group``) of the first alternative that
    matches in ``group``."""
    parameters = [(name, p, group.get_submodule(name.rpartition(".")[0]))
                  for name, p in group.named_parameters()]
    modules = [(name, m, group) for name, m in group.named_modules() if name]
    for targets in knob.alternatives:
        matched = [(p, target.part, owner, name) for target in targets
                   if target.when is None or target.when(group)
                   for name, p, owner in (modules if target.module else parameters)
                   if re.search(target.pattern, name)
                   and (target.module or p.ndim >= target.min_ndim)
                   and (target.owner is None or isinstance(owner, target.owner))]
        if matched:
            unique: dict[tuple[int, tuple[int, int] | None], tuple] = {}
            for p, part, owner, name in matched:
                unique.setdefault((id(p), part), (p, part, owner, name))
            return list(unique.values())
    return []


def _slot(full: str, part: tuple[int, int] | None, tensor: torch.Tensor,
          owner: nn.Module, key: str) -> Slot:
    if part is None:
        return Slot(full, key=key)
    # Hugging Face's Conv1D stores its weight as (in, out); nn.Linear, packed in_proj and the
    # gate-packed matrices and biases of nn.LSTM/GRU as (out, …)
    axis = tensor.ndim - 1 if type(owner).__name__ == "Conv1D" else 0
    if tensor.shape[axis] % part[1]:
        raise DiagnoseError(f"{full} has {tensor.shape[axis]} outputs, not a multiple of "
                            f"{part[1]}: it is not a packed map of {part[1]} parts")
    return Slot(full, axis, part[0], part[1], key)


def _check_disjoint(slots: dict[str, tuple[Slot, ...]]) -> None:
    """Two knobs may share a packed tensor (different slices), never the same slice."""
    taken: dict[str, list[tuple[Slot, str]]] = {}
    for knob, found in slots.items():
        for slot in found:
            for other, other_knob in taken.get(slot.name, []):
                overlap = slot.parts == 1 or other.parts == 1 or slot.index == other.index
                if other_knob != knob and overlap:
                    raise DiagnoseError(f"knobs {other_knob!r} and {knob!r} would both change "
                                        f"{slot.name}; choose one of them")
            taken.setdefault(slot.name, []).append((slot, knob))
