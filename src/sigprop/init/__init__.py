"""Critical initialization of any PyTorch model: knob factors, found on the measured exponents
at the model's depth, applied in place (``critical_init``, ``apply_init``, ``load_init``)."""

from sigprop.init.critical import DEFAULT_KNOBS, build_initialized, critical_init, reapply
from sigprop.init.knobs import KNOBS, Knob
from sigprop.init.result import CriticalInit, apply_init, load_init

__all__ = ["DEFAULT_KNOBS", "KNOBS", "CriticalInit", "Knob", "apply_init", "build_initialized",
           "critical_init", "load_init", "reapply"]
