"""Which model: one value for every verb that measures or initializes a PyTorch model.

``ModelSource.of`` accepts every way of naming a model, the same for ``sigprop.diagnose``,
``sigprop.critical_init``, ``sigprop.measure_init`` and ``sigprop init``/``diagnose`` on the
command line:

* an ``nn.Module`` instance (each seed measures a copy of it; ``critical_init`` changes the
  instance itself at the end);
* a factory ``factory(seed) -> nn.Module``, or its name ``"module.path:factory"`` (each seed
  builds a fresh model after ``torch.manual_seed(seed)``);
* ``hf=`` gpt2 | bert | llama: a Hugging Face model built from its config (``layers``, default
  24; ``width``, default 256; ``heads``), randomly initialized, nothing downloaded;
* ``net=`` resnet18 | lstm | gru | rnn | gcn: one of sigprop's networks of the other families.

and says how to drive it: ``run(model, n_tokens, seed)`` (default: the model's own embeddings of
random token ids for Hugging Face models, ``vocab_size`` random ids for a user's token-id model,
else orthogonal hidden states of width ``width``), which family it is (detected when None), where
its blocks are (found when None) and, for a recurrent network, over how many steps it is
unrolled (``layers``, default ``RECURRENT_STEPS``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable, TypedDict, Union

import numpy as np
import torch
from torch import nn
from typing_extensions import Unpack

from sigprop.measure.blocks import DiagnoseError, Run, _device_of
from sigprop.measure.ensemble import stream_seed
from sigprop.measure.factories import NETS, hf_factory, load_factory, net_factory
from sigprop.measure.families import FAMILIES, IMAGE_SIZE
from sigprop.measure.model_probe import build_model
from sigprop.spec.model_options import MODEL_OPTIONS

RECURRENT_STEPS = 64  # default time steps T of a recurrent network

Model = Union[nn.Module, Callable[[int], nn.Module], str]


Which = TypedDict("Which", {**{o.name: o.kind for o in MODEL_OPTIONS}, "run": Run},
                  total=False)
"""The keyword options of ``MODEL_OPTIONS`` (and ``run``) as a type for ``**which``."""

WHICH = tuple(Which.__annotations__)


@dataclass(frozen=True)
class ModelSource:
    """A model to measure: how to build seed s's copy (``factory``), how to drive it (``run``),
    and what it is (``family``, ``block_path``, ``width``, ``steps``, ``image_size``).
    ``instance`` is the ``nn.Module`` the user gave, if any."""

    factory: Callable[[int], nn.Module]
    run: Run | None = None
    family: str | None = None
    block_path: str | None = None
    width: int | None = None
    steps: int = RECURRENT_STEPS
    image_size: int = IMAGE_SIZE
    description: str | None = None
    instance: nn.Module | None = None

    @classmethod
    def of(cls, model: Model | ModelSource | None = None, *, n_tokens: int = 16,
           **which: Unpack[Which]) -> ModelSource:
        """The source named by exactly one of ``model``, ``which["hf"]`` and ``which["net"]``,
        with the options of ``Which``; ``n_tokens`` is the number of nodes of ``net="gcn"``'s
        random graph. Raises ``DiagnoseError`` for bad input."""
        unknown = set(which) - set(WHICH)
        if unknown:
            raise DiagnoseError(f"unknown model option {sorted(unknown)[0]!r}; the options are "
                                f"{', '.join(WHICH)}")
        if isinstance(model, ModelSource):
            if any(v is not None for v in which.values()):
                raise DiagnoseError("a ModelSource already says everything about the model: "
                                    "give no other model options with it")
            return model
        return cls._resolve(model, n_tokens, which)

    @classmethod
    def _resolve(cls, model: Model | None, n_tokens: int, which: Which) -> ModelSource:
        hf, net, family, layers, width, heads, blocks, run, vocab_size = (
            which.get(name) for name in ("hf", "net", "family", "layers", "width", "heads",
                                         "blocks", "run", "vocab_size"))
        image_size = IMAGE_SIZE if which.get("image_size") is None else which["image_size"]
        if sum(x is not None for x in (model, hf, net)) != 1:
            raise DiagnoseError("give one of: a model (an nn.Module, a factory or "
                                "'module.path:factory'), hf=FAMILY (--hf) or net=NAME (--net: "
                                f"{', '.join(NETS)})")
        _check_count("n_tokens", n_tokens, 2)
        _check_count("image_size", image_size, 8)
        for name, value, low in (("layers", layers, 1), ("width", width, 1),
                                 ("heads", heads, 1), ("vocab_size", vocab_size, 2)):
            if value is not None:
                _check_count(name, value, low)
        if family is not None and family not in FAMILIES:
            raise DiagnoseError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
        if vocab_size is not None:
            if run is not None:
                raise DiagnoseError("vocab_size and run exclude each other: run drives the model")
            run = TokenIds(vocab_size)
        steps = RECURRENT_STEPS if layers is None else layers
        common = dict(family=family, block_path=blocks, steps=steps, image_size=image_size)
        if hf is not None:
            factory, hf_run = hf_factory(hf, 24 if layers is None else layers,
                                         256 if width is None else width, heads)
            return cls(factory, run or hf_run, **common)
        if heads is not None:
            raise DiagnoseError("heads applies to hf models only (--hf)")
        if net is not None:
            factory, net_family = net_factory(net, layers, width, n_tokens, image_size)
            return cls(factory, run, **{**common, "family": family or net_family})
        if isinstance(model, nn.Module):
            template = copy.deepcopy(model)
            return cls(_Copies(template), run, width=width, instance=model,
                       description=f"{type(model).__name__} (the given instance)", **common)
        if isinstance(model, str):
            return cls(load_factory(model), run, width=width, **common)
        if not callable(model):
            raise DiagnoseError(f"model must be an nn.Module, a factory(seed) -> nn.Module or "
                                f"'module.path:factory'; got a {type(model).__name__}")
        return cls(model, run, width=width, **common)

    def with_run(self, run: Run | None) -> ModelSource:
        """The same source driven by ``run``."""
        return replace(self, run=run)

    def build(self, seed: int) -> nn.Module:
        """Seed ``seed``'s model as the user trains it: ``torch.manual_seed(seed)``, then the
        factory (its own dtype and device; a recurrent network not unrolled). The caller's
        random state is restored."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.factory(seed)
        if not isinstance(model, nn.Module):
            raise DiagnoseError(f"the factory returned a {type(model).__name__}, not a "
                                "torch.nn.Module")
        return model

    def probe_model(self, seed: int, device: torch.device) -> nn.Module:
        """Seed ``seed``'s model as it is measured: float64, eval mode, on ``device``, an
        nn.RNN/LSTM/GRU unrolled over ``steps`` on the seed's input sequence."""
        model = build_model(self.factory, seed, device)
        if isinstance(model, nn.RNNBase) and self.family in (None, "recurrent"):
            from sigprop.models.recurrent import Unrolled

            try:
                return Unrolled(model, self.steps,
                                input_seed=stream_seed(seed, "input sequence")).eval()
            except ValueError as error:
                raise DiagnoseError(str(error)) from None
        return model

    def describe(self, model: nn.Module | None = None) -> str:
        """The source's own description, else the built model's class."""
        own = self.description or getattr(self.factory, "description", None)
        if own:
            return own
        return type(model).__name__ if model is not None else "a model"


@dataclass(frozen=True)
class _Copies:
    """A factory returning deep copies of one model (the seeds vary only inputs and probes)."""

    template: nn.Module

    def __call__(self, seed: int = 0) -> nn.Module:
        return copy.deepcopy(self.template)


@dataclass(frozen=True)
class TokenIds:
    """Drives a model that takes token ids: ``model(ids)`` with ids (1, n) uniform in
    [0, ``vocab_size``), drawn from the seed's "token ids" stream (as Hugging Face models
    are driven)."""

    vocab_size: int

    def __call__(self, model: nn.Module, n_tokens: int, seed: int) -> Any:
        generator = torch.Generator().manual_seed(stream_seed(seed, "token ids"))
        ids = torch.randint(0, self.vocab_size, (1, n_tokens), generator=generator)
        return model(ids.to(_device_of(model)))


def _check_count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DiagnoseError(f"{name} must be an integer >= {low}; got {value!r}")
