"""Training any declared block as a causal character LM, many configs at once (docs/theory.md §8).

* :func:`train_together` — S configs (initialization hyperparameters and seed) trained together:
  one stacked model, ``vmap`` over its members, Adam, a fixed budget of steps; a diverging
  config is frozen and reported, never raised.
* :func:`exponents_at_init` — for each config, λ_a and λ_g of the theory (bidirectional;
  asymptotic and at the trained depth) and measured on the causal layers the LM is built from,
  and the last-layer state at depth L.
* :func:`lm_architecture`, :func:`lm_layer`, :func:`build_lm`, :func:`build_stacked_lm` — the
  model itself.
"""

from sigprop.train.exponents import exponents_at_init
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
    "exponents_at_init",
    "lm_architecture",
    "lm_layer",
    "train_together",
]
