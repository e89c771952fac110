"""Model factories ``factory(seed) -> nn.Module`` for ``diagnose``.

``hf_factory`` builds Hugging Face GPT-2, BERT or Llama base models from a config (random init,
nothing downloaded); ``load_factory("module.path:name")`` imports a user's factory.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from sigprop.measure.blocks import DiagnoseError, Run, run_token_ids


def hf_factory(family: str, layers: int, width: int, heads: int | None = None
               ) -> tuple[HFFactory, Run]:
    """``(factory, run)`` for a randomly initialized Hugging Face base model built locally from
    its config: ``gpt2`` (GPT2Model), ``bert`` (BertModel) or ``llama`` (LlamaModel); defaults of
    the config except depth, width, heads (default width // 64, at least 1) and the MLP width
    (4 d for BERT as in its default, 11008/4096 · d for Llama). Eager attention."""
    if family not in HF_FAMILIES:
        raise DiagnoseError(f"unknown Hugging Face family {family!r}; choose one of "
                            f"{', '.join(HF_FAMILIES)}")
    for name, value in (("layers", layers), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DiagnoseError(f"{name} must be an integer >= 1; got {value!r}")
    heads = max(1, width // 64) if heads is None else heads
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or width % heads:
        raise DiagnoseError(f"heads must be a positive divisor of width {width}; got {heads!r}")
    _import_transformers()
    return HFFactory(family, layers, width, heads), run_token_ids


HF_FAMILIES = {  # config class, model class, config arguments (layers, width, heads)
    "gpt2": ("GPT2Config", "GPT2Model",
             lambda L, d, h: dict(n_layer=L, n_embd=d, n_head=h)),
    "bert": ("BertConfig", "BertModel",
             lambda L, d, h: dict(num_hidden_layers=L, hidden_size=d, num_attention_heads=h,
                                  intermediate_size=4 * d)),
    "llama": ("LlamaConfig", "LlamaModel",
              lambda L, d, h: dict(num_hidden_layers=L, hidden_size=d, num_attention_heads=h,
                                   num_key_value_heads=h, intermediate_size=d * 11008 // 4096)),
}


@dataclass(frozen=True)
class HFFactory:
    """A Hugging Face base model from its config; ``factory(seed)`` draws weights from torch's
    global generator (``diagnose`` seeds it with ``seed``)."""

    family: str
    layers: int
    width: int
    heads: int

    def __call__(self, seed: int = 0) -> nn.Module:
        transformers = _import_transformers()
        config_name, model_name, arguments = HF_FAMILIES[self.family]
        config = getattr(transformers, config_name)(
            **arguments(self.layers, self.width, self.heads), attn_implementation="eager"
        )
        return getattr(transformers, model_name)(config)

    @property
    def description(self) -> str:
        return (f"{self.family} ({HF_FAMILIES[self.family][1]}, random init): {self.layers} "
                f"layers, width {self.width}, {self.heads} heads")


def load_factory(spec: str) -> UserFactory:
    """The factory named ``"module.path:name"``, importable from the current directory too.

    It is called as ``name(seed=seed)`` if it takes a ``seed`` argument, else ``name()``.
    Raises ``DiagnoseError`` naming the missing module or attribute or the non-callable.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise DiagnoseError(f"a model factory is given as 'module.path:factory'; got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise DiagnoseError(f"cannot import module {module_name!r} of {spec!r}: {error}") from None
    function = module
    for part in attribute.split("."):
        if not hasattr(function, part):
            raise DiagnoseError(f"module {module_name!r} has no attribute {attribute!r}")
        function = getattr(function, part)
    if not callable(function):
        raise DiagnoseError(f"{spec!r} is a {type(function).__name__}, not a callable factory")
    return UserFactory(spec, function)


@dataclass(frozen=True)
class UserFactory:
    """A user's model factory, called with ``seed=`` when it accepts it; checks the result."""

    spec: str
    function: Callable[..., Any]

    def __call__(self, seed: int = 0) -> nn.Module:
        takes_seed = _takes_seed(self.function)
        try:
            model = self.function(seed=seed) if takes_seed else self.function()
        except Exception as error:  # the user's code: any failure is theirs to fix
            how = "seed=" if takes_seed else "no arguments"
            raise DiagnoseError(f"{self.spec} failed when called with {how}: "
                                f"{type(error).__name__}: {error}") from None
        if not isinstance(model, nn.Module):
            raise DiagnoseError(f"{self.spec} returned a {type(model).__name__}, not a "
                                "torch.nn.Module")
        return model

    @property
    def description(self) -> str:
        return self.spec


def _takes_seed(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "seed" or p.kind is p.VAR_KEYWORD for p in parameters)


def _import_transformers():
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise DiagnoseError("Hugging Face models need the `transformers` package: "
                            "pip install transformers") from None


NETS = ("resnet18", "lstm", "gru", "rnn", "gcn")
"""sigprop's own networks of the other families (``net_factory``)."""


def net_factory(net: str, layers: int | None, width: int | None, n_tokens: int,
                image_size: int = 64) -> tuple[NetFactory, str]:
    """``(factory, family)`` for one of ``NETS``, randomly initialized as its library does:
    ``resnet18`` (``sigprop.models.vision``, torchvision's ResNet-18, ``width`` base channels,
    default 64; its 8 residual blocks are fixed, ``layers`` must be None or 8), ``lstm``,
    ``gru``, ``rnn`` (torch's nn.LSTM/GRU/RNN, input and hidden size ``width``, default 128;
    diagnose unrolls it over ``layers`` steps), ``gcn`` (``sigprop.models.graph.GCN`` of
    ``layers`` layers, default 24, width ``width``, default 128, σ_w = √2, ReLU, on a connected
    Erdős–Rényi graph of ``n_tokens`` nodes and mean degree 4 drawn per seed)."""
    if net not in NETS:
        raise DiagnoseError(f"unknown --net {net!r}; choose one of {', '.join(NETS)}")
    if net == "resnet18" and layers not in (None, 8):
        raise DiagnoseError(f"resnet18 has 8 residual blocks; --layers {layers} does not apply")
    default = 64 if net == "resnet18" else 128
    width = default if width is None else width
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise DiagnoseError(f"width must be an integer >= 1; got {width!r}")
    family = {"resnet18": "convolutional", "gcn": "graph"}.get(net, "recurrent")
    if layers is None:
        layers = {"resnet18": 8, "gcn": 24}.get(net, 64)
    return NetFactory(net, layers, width, n_tokens, image_size), family


@dataclass(frozen=True)
class NetFactory:
    """One of sigprop's networks of ``NETS``; ``factory(seed)`` draws from torch's global
    generator (``diagnose`` seeds it), the GCN's graph from ``stream_seed(seed, "graph")``."""

    net: str
    layers: int
    width: int
    n_tokens: int
    image_size: int = 64

    def __call__(self, seed: int = 0) -> nn.Module:
        if self.net == "resnet18":
            from sigprop.models.vision import resnet18

            return resnet18(num_classes=10, width=self.width)
        if self.net == "gcn":
            from sigprop.measure.ensemble import stream_seed
            from sigprop.models.graph import GCN, random_graph

            if self.n_tokens < 5:
                raise DiagnoseError(f"a random graph of mean degree 4 needs 5 or more nodes; "
                                    f"got n_tokens {self.n_tokens}")
            graph = random_graph(self.n_tokens, 4.0, seed=stream_seed(seed, "graph"))
            return GCN(self.layers, self.width, graph)
        kind = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[self.net]
        return kind(self.width, self.width)

    @property
    def description(self) -> str:
        if self.net == "resnet18":
            return (f"resnet18 (torchvision's ResNet-18, random init): width {self.width}, "
                    f"{self.image_size}×{self.image_size} input")
        if self.net == "gcn":
            return (f"gcn (X ← relu(Â X W), σ_w = √2): {self.layers} layers, width "
                    f"{self.width}, random graph of {self.n_tokens} nodes, mean degree 4")
        return (f"{self.net} (torch nn.{self.net.upper()}, random init): hidden size "
                f"{self.width}, unrolled over {self.layers} steps")
