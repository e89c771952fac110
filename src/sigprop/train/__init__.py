"""Training any declared block as a causal character LM, many configs at once (docs/theory.md §8).

* :func:`train_together` — S configs (initialization hyperparameters and seed) trained together:
  one stacked model, ``vmap`` over its members, Adam, a fixed budget of steps; a diverging
  config is frozen and reported, never raised.
* :func:`lm_architecture`, :func:`lm_layer`, :func:`build_lm`, :func:`build_stacked_lm` — the
  model itself.
"""

from sigprop.train.model import (
    CausalLM,
    build_lm,
    build_stacked_lm,
    cross_entropy,
    lm_architecture,
    lm_layer,
)
from sigprop.train.trainer import TrainSettings, train_together

__all__ = [
    "CausalLM",
    "TrainSettings",
    "build_lm",
    "build_stacked_lm",
    "cross_entropy",
    "lm_architecture",
    "lm_layer",
    "train_together",
]
