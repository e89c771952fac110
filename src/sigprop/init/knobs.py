"""The knobs of a critical initialization: groups of initial parameters scaled by one factor.

A knob multiplies chosen parameters of every block by a factor s > 0, in place:

* ``branch`` knobs scale the last linear map of a residual branch (its weight and bias), so the
  branch's output is multiplied by s exactly: a residual branch multiplier;
* ``weight`` knobs scale a weight matrix by s, i.e. its variance by s²: a weight-variance
  multiplier σ_w² → s² σ_w². The attention maps (query, value) are scaled with their bias, so
  the map's output is multiplied by s exactly; the MLP input map keeps its bias (the
  pre-activation offset σ_b stays).

``attn_logits`` scales the query map, so every attention logit q·k is multiplied by s (rotary
encodings are linear in q, so Llama's too). ``mlp_input`` scales the map into the MLP's
nonlinearity (the gate map of a gated MLP; its linear "up" map is only a gain).
``attn_values`` scales the value map (weight and bias), so the attention branch's output × s.

Each knob is declared once (``KNOBS``), with the parameter names it recognizes in the blocks of
the model families people train: Hugging Face GPT-2 (packed ``c_attn`` as a Conv1D, in × 3d),
BERT, Llama, ``torch.nn.TransformerEncoderLayer`` (packed ``in_proj_weight``, 3d × in),
nanoGPT/timm-style blocks (packed ``c_attn``/``qkv`` as nn.Linear), and sigprop's own blocks.
A knob lists alternatives in order; in each block the first alternative that matches any
parameter is used (a sigprop attention without output map has its values as the branch's last
map). Names are matched against the parameter's dotted name inside the block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sigprop.measure.blocks import DiagnoseError

KnobKind = Literal["branch", "weight"]


@dataclass(frozen=True)
class Target:
    """Parameters whose dotted name inside a block matches ``pattern``; for a packed q/k/v
    matrix, ``part`` = (k, 3): the k-th third along the output axis."""

    pattern: str
    part: tuple[int, int] | None = None


@dataclass(frozen=True)
class Knob:
    """One scale factor shared by the matching parameters of every block."""

    name: str
    kind: KnobKind
    summary: str
    alternatives: tuple[tuple[Target, ...], ...]


def _packed(name: str, k: int) -> Target:
    return Target(rf"(^|\.){name}\.(weight|bias)$", (k, 3))


_QKV = ("c_attn", "qkv", "in_proj")

KNOBS: dict[str, Knob] = {knob.name: knob for knob in (
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
    Knob("mlp_branch", "branch", "MLP branch output (output map): branch × s", (
        (Target(r"(^|\.)mlp\.(c_proj|fc2|down_proj|w2)\.(weight|bias)$"),
         Target(r"(^|\.)(linear2|down_proj)\.(weight|bias)$"),
         Target(r"^output\.dense\.(weight|bias)$"), Target(r"(^|\.)W_2$")),)),
)}


@dataclass(frozen=True)
class Slot:
    """One tensor (or a third of a packed one) that a knob scales: ``name`` is its dotted name
    in the model; ``axis``/``index``/``parts`` pick the slice (``parts`` = 1: all of it)."""

    name: str
    axis: int = 0
    index: int = 0
    parts: int = 1

    def view(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.parts == 1:
            return tensor
        size = tensor.shape[self.axis] // self.parts
        return tensor.narrow(self.axis, self.index * size, size)


def check_knobs(names: tuple[str, ...] | list[str]) -> tuple[Knob, ...]:
    """The declared knobs of these names, in order; ValueError naming unknown or repeated ones."""
    unknown = [n for n in names if n not in KNOBS]
    if unknown:
        raise DiagnoseError(f"knobs must be among {', '.join(KNOBS)}; got {', '.join(unknown)}")
    if len(set(names)) != len(names) or not names:
        raise DiagnoseError(f"knobs must be distinct and at least one; got {list(names)}")
    return tuple(KNOBS[n] for n in names)


def knob_slots(model: nn.Module, blocks: list[nn.Module], block_path: str,
               knobs: tuple[Knob, ...]) -> dict[str, tuple[Slot, ...]]:
    """The slots of every knob in every block of ``model``.

    Raises ``DiagnoseError`` when a knob matches nothing in some block (naming the block's
    parameters), or when two knobs would scale the same tensor slice.
    """
    owners = dict(model.named_modules())
    prefix = f"{block_path}." if block_path else ""
    slots: dict[str, tuple[Slot, ...]] = {}
    for knob in knobs:
        found: list[Slot] = []
        for index, block in enumerate(blocks):
            names = [name for name, _ in block.named_parameters()]
            matched = _match(knob, names)
            if not matched:
                raise DiagnoseError(
                    f"knob {knob.name!r} ({knob.summary}) matches no parameter of block {index} "
                    f"({type(block).__name__}: {', '.join(names) or 'no parameters'})"
                )
            for name, part in matched:
                full = f"{prefix}{index}.{name}"
                found.append(_slot(full, part, owners, dict(model.named_parameters())[full]))
        slots[knob.name] = tuple(found)
    _check_disjoint(slots)
    return slots


def scale_slots(model: nn.Module, slots: tuple[Slot, ...], factor: float) -> None:
    """Multiply every slot by ``factor`` in place (no gradient is recorded)."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for slot in slots:
            slot.view(parameters[slot.name]).mul_(factor)


def _match(knob: Knob, names: list[str]) -> list[tuple[str, tuple[int, int] | None]]:
    for targets in knob.alternatives:
        matched = [(name, target.part) for target in targets for name in names
                   if re.search(target.pattern, name)]
        if matched:
            return list(dict.fromkeys(matched))
    return []


def _slot(full: str, part: tuple[int, int] | None, owners: dict[str, nn.Module],
          tensor: torch.Tensor) -> Slot:
    if part is None:
        return Slot(full)
    owner = owners[full.rpartition(".")[0]]
    # Hugging Face's Conv1D stores its weight as (in, out); nn.Linear and packed in_proj as (out, in)
    axis = tensor.ndim - 1 if type(owner).__name__ == "Conv1D" else 0
    if tensor.shape[axis] % part[1]:
        raise DiagnoseError(f"{full} has {tensor.shape[axis]} outputs, not a multiple of "
                            f"{part[1]}: it is not a packed query/key/value map")
    return Slot(full, axis, part[0], part[1])


def _check_disjoint(slots: dict[str, tuple[Slot, ...]]) -> None:
    """Two knobs may share a packed tensor (different thirds), never the same slice."""
    taken: dict[str, list[tuple[Slot, str]]] = {}
    for knob, found in slots.items():
        for slot in found:
            for other, other_knob in taken.get(slot.name, []):
                overlap = slot.parts == 1 or other.parts == 1 or slot.index == other.index
                if other_knob != knob and overlap:
                    raise DiagnoseError(f"knobs {other_knob!r} and {knob!r} would both scale "
                                        f"{slot.name}; choose one of them")
            taken.setdefault(slot.name, []).append((slot, knob))
