"""The one description: declared hyperparameters and options, presets, and the components a
layer is built of.

* ``declarations`` — every hyperparameter and option, declared once (name, symbol, range,
  default, where it goes);
* ``Architecture`` — a preset or description file with values overridden; ``.layer()`` gives the
  component description that both the theory and the PyTorch builder read;
* ``components`` — RMSNorm, LayerNorm, DyT, SelfAttention, MLP, Dense, Residual, Serial.
"""

from sigprop.spec.architecture import Architecture, depth_or, reference_layer
from sigprop.spec.components import (
    MLP,
    Dense,
    DyT,
    LayerNorm,
    Residual,
    RMSNorm,
    SelfAttention,
    Serial,
    validate,
)
from sigprop.spec.declarations import (
    ALIASES,
    HYPERPARAMETERS,
    INPUTS,
    OPTIONS,
    SETTINGS,
    Hyperparameter,
    Option,
    axis,
    canonical_names,
    declaration,
)
from sigprop.spec.errors import InvalidHyperparameter, NotCovered
from sigprop.spec.expressions import DepthFormula, parse_value
from sigprop.spec.model_options import MODEL_OPTIONS, ModelOption
from sigprop.spec.presets import PRESETS

__all__ = [
    "ALIASES",
    "Architecture",
    "Dense",
    "DepthFormula",
    "DyT",
    "HYPERPARAMETERS",
    "Hyperparameter",
    "INPUTS",
    "InvalidHyperparameter",
    "LayerNorm",
    "MLP",
    "MODEL_OPTIONS",
    "ModelOption",
    "NotCovered",
    "OPTIONS",
    "Option",
    "PRESETS",
    "RMSNorm",
    "Residual",
    "SETTINGS",
    "SelfAttention",
    "Serial",
    "axis",
    "canonical_names",
    "declaration",
    "depth_or",
    "parse_value",
    "reference_layer",
    "validate",
]
