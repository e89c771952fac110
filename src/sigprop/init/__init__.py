"""Critical initialization of any PyTorch model: knob values, found on the measured exponents
at the model's depth, applied in place (``critical_init``, ``apply_init``, ``load_init``).
Transformers, ResNets, RNN/LSTM/GRU (over their unrolled horizon) and GCNs, each family with
its own knobs (``KNOBS``, ``FAMILY_DEFAULTS``; docs/init_families.md)."""

from sigprop.init.critical import (DEFAULT_KNOBS, MEANING, build_initialized, critical_init,
                                   reapply)
from sigprop.init.knobs import FAMILY_DEFAULTS, KNOBS, Knob, family_knobs
from sigprop.init.result import CriticalInit, apply_init, load_init

__all__ = ["DEFAULT_KNOBS", "FAMILY_DEFAULTS", "KNOBS", "MEANING", "CriticalInit", "Knob",
           "apply_init", "build_initialized", "critical_init", "family_knobs", "load_init",
           "reapply"]
