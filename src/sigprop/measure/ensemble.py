"""Many random networks (one per seed) evaluated together, one layer at a time.

For each layer, the blocks of all seeds are stacked (``torch.func.stack_module_state``) and a
single ``functional_call`` is ``vmap``-ed over the seed axis. Blocks are drawn lazily with
``sigprop.models.iter_blocks``, so block l of seed s is bit-for-bit block l of
``build_network(..., seed=s)`` while only one layer of parameters is held in memory.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from torch import Tensor, nn
from torch.func import functional_call, jvp, stack_module_state, vmap

from sigprop.architecture import Serial
from sigprop.models import iter_blocks


@dataclass(frozen=True)
class StackedBlock:
    """One layer of every seed's network: ``params`` carry a leading seed axis of size S."""

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
    layer: Serial,
    *,
    depth: int,
    width: int,
    ff_width: int | None,
    seeds: Sequence[int],
) -> Iterator[StackedBlock]:
    """The ``depth`` layers of the networks ``build_network(layer, ..., seed=s)`` for s in seeds.

    Arguments are validated immediately (``ValueError`` naming the argument).
    """
    check_seeds(seeds)
    streams = [iter_blocks(layer, depth, width, ff_width, seed=int(s)) for s in seeds]
    return (_stack(list(blocks)) for blocks in zip(*streams))


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


def _stack(blocks: list[nn.Module]) -> StackedBlock:
    params, _ = stack_module_state(blocks)
    template = copy.deepcopy(blocks[0]).to("meta")
    return StackedBlock(template, {name: p.detach() for name, p in params.items()})
