"""Any ``torch.nn.Module`` built of a sequence of blocks, seen as a function X_0 ↦ (X_1, …, X_L).

X_0 is the hidden state entering block 0 and X_l the hidden state leaving block l. Hooks turn
the model into that function without knowing its code:

* a forward pre-hook on block 0 reads (``natural_input``) or replaces (``propagate``) its
  hidden-states argument: the first positional argument, or the keyword ``hidden_states``;
* a forward hook on every block records its output (the first element of a tuple or a
  ``ModelOutput``).

The model itself runs unchanged through ``run(model, n_tokens, seed)`` (token ids for Hugging
Face models, tokens for plain modules), so embeddings, position encodings, attention masks and
rotary tables are built by the model as usual; only the hidden states entering block 0 are ours.
``torch.func.jvp`` of the hooked function then gives every layer's state and tangent in one
forward-mode pass. Scaled-dot-product attention runs on its math kernel and
``nn.MultiheadAttention`` off its fused fast path: only those have forward-mode derivatives.

Models come from factories ``factory(seed) -> nn.Module`` (``factories.py``).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from sigprop.measure.ensemble import stream_seed
from sigprop.measure.geometry import simplex_tokens

Run = Callable[[nn.Module, int, int], Any]
"""``run(model, n_tokens, seed)``: one forward pass of ``model`` on the inputs of ``seed``."""


class DiagnoseError(ValueError):
    """The model or the request cannot be diagnosed; the message names what was wrong."""


def find_blocks(model: nn.Module, path: str | None = None) -> tuple[str, nn.Module]:
    """The dotted path and the container of ``model``'s blocks.

    With ``path`` that submodule (an ``nn.ModuleList`` or ``nn.Sequential``). Otherwise the
    longest ``nn.ModuleList`` whose children all share one class (GPT-2 ``h``, BERT
    ``encoder.layer``, Llama ``layers``, sigprop ``blocks``), among those not nested inside
    another (per-block lists of heads or experts can be longer than the list of blocks); ties go
    to the heavier list (blocks outweigh per-layer norms). An ``nn.Sequential`` of one class is
    taken only when there is no such ``nn.ModuleList``.
    """
    if path is not None:
        return path, _named_container(model, path)
    lists = _outermost(_homogeneous(model, nn.ModuleList))
    if lists:
        return max(lists, key=lambda c: (len(c[1]), _n_parameters(c[1])))
    chains = _stage_chains(_outermost(_homogeneous(model, nn.Sequential, minimum=2)))
    if not chains:
        raise DiagnoseError(
            f"no sequence of blocks found in {type(model).__name__}: looked for an nn.ModuleList "
            "(or nn.Sequential stages) whose children all share one class; name the blocks "
            "(block_path='dotted.path', --blocks PATH), set the family (family=..., --family), "
            "or pass an nn.RNN/LSTM/GRU, a CNN of residual blocks or a GCN with an `adjacency`"
        )
    return max(chains, key=lambda c: (len(c[1]), _n_parameters(c[1])))


def _stage_chains(candidates: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """Homogeneous ``nn.Sequential`` siblings of one child class joined, in order, into one
    chain (ResNet's layer1 … layer4 of residual blocks, path "layer1+layer2+layer3+layer4");
    a chain of a single Sequential needs 2 or more blocks (as before: ``nn.Sequential`` of one
    class). The chain is an unregistered ``nn.ModuleList`` view: the model is not changed."""
    groups: dict[tuple[str, type], list[tuple[str, nn.Module]]] = {}
    for name, module in candidates:
        parent = name.rpartition(".")[0]
        groups.setdefault((parent, type(next(iter(module)))), []).append((name, module))
    chains = []
    for members in groups.values():
        if len(members) == 1:
            if len(members[0][1]) >= 2:
                chains.append(members[0])
            continue
        view = nn.ModuleList()
        view._modules = {str(i): block for i, block in
                         enumerate(b for _, m in members for b in m)}
        chains.append(("+".join(name for name, _ in members), view))
    return chains


def infer_width(model: nn.Module, blocks: nn.Module) -> int:
    """The hidden size d: ``config.hidden_size``/``n_embd``/``d_model``, a ``width``/``d_model``/
    ``hidden_size``/``embed_dim`` attribute, or the input size of block 0's first linear map or
    matrix (last dimension of its first parameter with 2 or more dims)."""
    config = getattr(model, "config", None)
    for owner, names in ((config, ("hidden_size", "n_embd", "d_model")),
                         (model, ("width", "d_model", "hidden_size", "embed_dim"))):
        for name in names:
            value = getattr(owner, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    first = next(iter(blocks))
    for module in first.modules():
        if isinstance(module, nn.Linear):
            return module.in_features
        if isinstance(module, nn.LayerNorm):
            return module.normalized_shape[-1]
    for parameter in first.parameters():
        if parameter.ndim >= 2:
            return parameter.shape[-1]
    raise DiagnoseError(
        f"cannot tell the width of {type(model).__name__}: no config.hidden_size, width attribute "
        "or matrix in its first block; pass the width explicitly (width=..., --width)"
    )


def default_run(model: nn.Module, blocks: nn.Module, width: int | None = None) -> Run:
    """``run_token_ids`` for a model with ``config.vocab_size`` (Hugging Face), else plain
    ``TokensRun`` at ``width`` (inferred when None). A ``width`` that contradicts the model's
    config raises ``DiagnoseError``."""
    config = getattr(model, "config", None)
    if isinstance(getattr(config, "vocab_size", None), int):
        hidden = infer_width(model, blocks)
        if width is not None and width != hidden:
            raise DiagnoseError(
                f"width {width} does not match the model: its config has hidden size {hidden}"
            )
        return run_token_ids
    if width is None:
        return TokensRun(infer_width(model, blocks))
    try:
        hint = infer_width(model, blocks)
    except DiagnoseError:
        hint = None
    return TokensRun(width, hint)


def run_token_ids(model: nn.Module, n_tokens: int, seed: int) -> Any:
    """Hugging Face models: ``model(input_ids=ids)``, ids (1, n) uniform in the vocabulary."""
    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(limit, int) and n_tokens > limit:
        raise DiagnoseError(f"n_tokens {n_tokens} exceeds the model's {limit} positions")
    generator = torch.Generator().manual_seed(stream_seed(seed, "token ids"))
    ids = torch.randint(0, model.config.vocab_size, (1, n_tokens), generator=generator)
    return model(input_ids=ids.to(_device_of(model)))


class TokensRun:
    """Plain modules: ``model(X)`` with X of shape (1, n, d), the orthogonal tokens of
    ``simplex_tokens(n, d, q0=1, rho0=0)`` (|x_i|² = d) oriented at random per seed, exactly
    the inputs ``sigprop.measure.measure_trajectory`` uses at q0 = 1, ρ0 = 0. ``hint`` (the
    width the model appears to have) only improves the error when the model rejects d."""

    def __init__(self, width: int, hint: int | None = None) -> None:
        self.width = width
        self.hint = hint

    def __call__(self, model: nn.Module, n_tokens: int, seed: int) -> Any:
        if n_tokens >= self.width:
            raise DiagnoseError(f"n_tokens must be below the width {self.width} for orthogonal "
                                f"input tokens; got {n_tokens}")
        x = simplex_tokens(n_tokens, self.width, 1.0, 0.0, seed=stream_seed(seed, "input tokens"))
        x = x.to(_device_of(model))
        try:
            return model(x[None])
        except (DiagnoseError, NotImplementedError):
            raise
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            if "Long" in str(error) or "indices" in str(error):
                raise DiagnoseError(
                    f"{type(model).__name__} takes token ids, not hidden states: pass "
                    "run=lambda model, n_tokens, seed: model(ids) with ids a (1, n_tokens) "
                    "LongTensor (or give the model a config.vocab_size)"
                ) from error
            looks = f"; its blocks look like width {self.hint}" if self.hint else ""
            raise DiagnoseError(
                f"width {self.width} does not match the model: running {type(model).__name__} on "
                f"tokens of shape (1, {n_tokens}, {self.width}) failed ({type(error).__name__}: "
                f"{error}){looks}"
            ) from error


class BlockFunction:
    """X_0 ↦ (X_1, …, X_L) for one model and one input seed; use as a context manager (hooks
    are installed on entry and removed on exit)."""

    def __init__(self, model: nn.Module, blocks: Sequence[nn.Module], run: Run, *,
                 n_tokens: int, seed: int) -> None:
        self.blocks = list(blocks)
        self._forward = lambda: run(model, n_tokens, seed)
        self._inject: Tensor | None = None
        self._entering: Tensor | None = None
        self._outputs: list[Tensor] = []
        self._handles: list = []

    def __enter__(self) -> BlockFunction:
        self._handles.append(
            self.blocks[0].register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        )
        self._handles += [block.register_forward_hook(self._post_hook) for block in self.blocks]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def natural_input(self) -> Tensor:
        """The hidden states the model itself feeds to block 0 (its embeddings of the inputs)."""
        self._inject = None
        with torch.no_grad():
            self._run()
        return self._entering.detach().clone()

    def __call__(self, x0: Tensor) -> tuple[Tensor, ...]:
        """(X_1, …, X_L) when block 0 receives ``x0`` (shape of ``natural_input``)."""
        self._inject = x0
        try:
            return tuple(self._run())
        finally:
            self._inject = None

    def propagate(self, x0: Tensor, tangent: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """States [X_0, …, X_L] and tangents [T_0, …, T_L], T_l = (∂X_l/∂X_0) T_0, one jvp pass."""
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)  # fused nn.MultiheadAttention: no jvp
        try:
            with sdpa_kernel([SDPBackend.MATH]):
                states, tangents = jvp(self, (x0,), (tangent,))
        except NotImplementedError as error:
            raise DiagnoseError(
                f"an operation of the model has no forward-mode derivative: {error}"
            ) from error
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        return [x0, *states], [tangent, *tangents]

    def _run(self) -> list[Tensor]:
        self._entering, self._outputs = None, []
        self._forward()
        if self._entering is None:
            raise DiagnoseError("the model never called its first block; check the block path")
        if len(self._outputs) != len(self.blocks):
            raise DiagnoseError(
                f"the model called its {len(self.blocks)} blocks {len(self._outputs)} times in one "
                "pass; diagnose needs each block called once, in order"
            )
        return self._outputs

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args and isinstance(args[0], Tensor):
            entering = args[0]
        elif isinstance(kwargs.get("hidden_states"), Tensor):
            entering = kwargs["hidden_states"]
        else:
            raise DiagnoseError(
                f"block 0 ({type(module).__name__}) received no tensor as its first argument or "
                "as `hidden_states`; diagnose cannot tell which argument is the hidden state"
            )
        self._entering = entering
        if self._inject is None:
            return args, kwargs
        if self._inject.shape[1:] != entering.shape[1:]:  # rows: independent members
            raise DiagnoseError(f"X_0 has shape {tuple(self._inject.shape)}; block 0 expects "
                                f"{tuple(entering.shape)}")
        if args and args[0] is entering:
            return (self._inject, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": self._inject}

    def _post_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        try:
            hidden = output if isinstance(output, Tensor) else output[0]
        except (TypeError, IndexError, KeyError):
            hidden = output
        if self._entering.ndim == 4:  # feature maps: channels and resolution may change
            if not isinstance(hidden, Tensor) or hidden.ndim != 4:
                raise DiagnoseError(
                    f"block {len(self._outputs)} ({type(module).__name__}) did not return a "
                    f"feature map (batch, C, H, W) (first output: {_describe(hidden)})"
                )
        elif not isinstance(hidden, Tensor) or hidden.shape[-1] != self._entering.shape[-1]:
            raise DiagnoseError(
                f"block {len(self._outputs)} ({type(module).__name__}) did not return hidden "
                f"states of width {self._entering.shape[-1]} (first output: {_describe(hidden)})"
            )
        self._outputs.append(hidden)


def _device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a stateless model)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


def _named_container(model: nn.Module, path: str) -> nn.Module:
    try:
        blocks = model.get_submodule(path)
    except AttributeError:
        found = ", ".join(name for name, _ in _homogeneous(model, nn.ModuleList)) or "none"
        raise DiagnoseError(
            f"{type(model).__name__} has no submodule {path!r} (lists of blocks found: {found})"
        ) from None
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or len(blocks) == 0:
        raise DiagnoseError(
            f"{path!r} is a {type(blocks).__name__}, not a non-empty nn.ModuleList or "
            "nn.Sequential of blocks"
        )
    return blocks


def _homogeneous(model: nn.Module, kind: type, minimum: int = 1) -> list[tuple[str, nn.Module]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, kind) and len(module) >= minimum
        and len({type(child) for child in module}) == 1
    ]


def _outermost(candidates: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    def inside(name: str, other: str) -> bool:
        return name != other and (other == "" or name.startswith(other + "."))

    return [(name, m) for name, m in candidates
            if not any(inside(name, other) for other, _ in candidates)]


def _n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    return type(value).__name__
