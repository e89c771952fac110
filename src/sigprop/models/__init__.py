"""PyTorch networks built from an architecture description (THEORY.md §1)."""

from sigprop.models.build import BuildContext, build_component, build_network, iter_blocks
from sigprop.models.modules import (
    LayerNormModule,
    MLPModule,
    Network,
    ResidualModule,
    SelfAttentionModule,
)

__all__ = [
    "BuildContext",
    "LayerNormModule",
    "MLPModule",
    "Network",
    "ResidualModule",
    "SelfAttentionModule",
    "build_component",
    "build_network",
    "iter_blocks",
]
