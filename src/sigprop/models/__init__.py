"""PyTorch networks built from an architecture description (``sigprop.spec.components``)."""

from sigprop.models.build import BuildContext, build_component, build_network, ff_width, iter_blocks
from sigprop.models.modules import (
    DyTModule,
    LayerNormModule,
    MLPModule,
    Network,
    ResidualModule,
    RMSNormModule,
    SelfAttentionModule,
)

__all__ = [
    "BuildContext",
    "DyTModule",
    "LayerNormModule",
    "MLPModule",
    "Network",
    "RMSNormModule",
    "ResidualModule",
    "SelfAttentionModule",
    "build_component",
    "build_network",
    "ff_width",
    "iter_blocks",
]
