"""Many random networks (one per seed) evaluated together, one layer at a time.

For each layer, the blocks of all seeds are stacked (``torch.func.stack_module_state``) and a
single ``functional_call`` is ``vmap``-ed over the seed axis. Blocks are drawn lazily with
``sigprop.models.iter_blocks``, so block l of seed s is bit-for-bit block l of
``build_network(..., seed=s)`` while only one layer of parameters is held in memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp, vmap

from sigprop.spec.components import Serial, structure
from sigprop.models.build import iter_stacked_blocks


@dataclass(frozen=True)
class StackedBlock:
    """One layer of every member's network: ``params`` (parameters and buffers) carry a leading
    member axis of size S."""

    template: nn.Module
    params: dict[str, Tensor]

    def jvp(self, x: Tensor, tangents: Tensor) -> tuple[Tensor, Tensor]:
        """(block(X), J T) per seed and per tangent.

        ``x``: ``(S, n, d)``; ``tangents``: ``(S, P, n, d)``. Returns ``(S, n, d)`` and
        ``(S, P, n, d)``; forward mode, the primal is computed once per seed.
        """
        return vmap(self._jvp_one_seed)(self.params, x, tangents)

    def _jvp_one_seed(
        self, params: dict[str, Tensor], x: Tensor, tangents: Tensor
    ) -> tuple[Tensor, Tensor]:
        def block(y: Tensor) -> Tensor:
            return functional_call(self.template, params, (y,))

        # The primal does not depend on the tangent: vmap returns it expanded, not recomputed.
        outputs, pushed = vmap(lambda t: jvp(block, (x,), (t,)))(tangents)
        return outputs[0], pushed


def stacked_blocks(
    layer: Serial | Sequence[Serial],
    *,
    depth: int,
    width: int,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
) -> Iterator[StackedBlock]:
    """The ``depth`` layers of the networks ``build_network(layer_m, ..., seed=seed_m)``.

    ``layer`` is one description shared by every seed, or one description per member (paired
    with ``seeds``): members may differ in every numeric hyperparameter (skip and branch
    weights and κ are buffers, the σ's only scale the draws), but not in structure, so that one
    template serves all.
    The weights are drawn on the CPU (the same networks on every device) and moved to
    ``device``. Arguments are validated immediately (``ValueError`` naming the argument).
    """
    check_seeds(seeds)
    layers = [layer] * len(seeds) if isinstance(layer, Serial) else list(layer)
    if len(layers) != len(seeds):
        raise ValueError(f"need one seed per layer description; got {len(seeds)} and {len(layers)}")
    check_same_structure(layers)
    blocks = iter_stacked_blocks(layers, seeds, depth, width)
    return (StackedBlock(block.to(device), _tensors(block.to(device))) for block in blocks)


def member_passes(
    layers: Sequence[Serial],
    seeds: Sequence[int],
    *,
    depth: int,
    width: int,
    batch: int,
    on_layer: Callable[[], None] | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[list[int], Iterator[StackedBlock]]]:
    """The (point, seed) networks, point-major, ``batch`` members per pass: for each pass its
    members' seeds and its stacked blocks (``on_layer`` called after each block is used)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1; got {batch}")
    check_seeds(seeds)
    check_same_structure(layers)
    members = [(layer, int(seed)) for layer in layers for seed in seeds]
    for start in range(0, len(members), batch):
        chunk = members[start : start + batch]
        chunk_seeds = [seed for _, seed in chunk]
        blocks = stacked_blocks([layer for layer, _ in chunk], depth=depth, width=width,
                                seeds=chunk_seeds, device=device)
        yield chunk_seeds, observed(blocks, on_layer)


def observed(blocks: Iterator[StackedBlock], on_layer: Callable[[], None] | None) -> Iterator[StackedBlock]:
    """``blocks``, calling ``on_layer`` after each one has been used (progress reporting)."""
    for block in blocks:
        yield block
        if on_layer is not None:
            on_layer()


def check_same_structure(layers: Sequence[Serial]) -> None:
    """Descriptions batched together must differ only in numeric hyperparameters."""
    shapes = {structure(layer) for layer in layers}
    if len(shapes) > 1:
        raise ValueError(
            "layer descriptions evaluated together must have the same components and "
            f"structural options (activation, heads, …); got {len(shapes)} different structures"
        )


def stream_seed(seed: int, purpose: str) -> int:
    """Seed of the random stream named ``purpose`` (inputs, probes, ...) belonging to ``seed``.

    Derived with ``numpy.random.SeedSequence`` so it is independent of the weight stream,
    which ``build_network`` seeds with ``seed`` itself, and of every other purpose.
    """
    entropy = (int(seed), zlib.crc32(purpose.encode()))
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def check_seeds(seeds: Sequence[int]) -> None:
    """Seeds must be a non-empty sequence of non-negative integers."""
    if len(seeds) == 0:
        raise ValueError("seeds must be a non-empty sequence of non-negative integers; got none")
    bad = [s for s in seeds if not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 0]
    if bad:
        raise ValueError(f"seeds must be non-negative integers; got {bad[0]!r}")


def _tensors(block: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers (residual weights, DyT scales) of a stacked block, by name."""
    return {name: t.detach() for name, t in (*block.named_parameters(), *block.named_buffers())}
