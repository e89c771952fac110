"""The engine of critical initialization (the verbs are ``sigprop.critical_init``,
``sigprop.apply_init``, ``sigprop.measure_init``, ``sigprop.initialized_model``): the knobs
(``knobs.py``: groups of initial parameters changed by one value, per family), the seeds' models
rescaled and measured again and again (``ensemble.py``), the constrained root finding
(``solve.py``), the theory's warm start (``warm_start.py``), the result as data
(``result.py``: ``CriticalInit``, ``apply_init``, ``load_init``) and its words
(``explain.py``)."""

from sigprop.init.knobs import FAMILY_DEFAULTS, KNOBS, Knob, family_knobs
from sigprop.init.result import CriticalInit, apply_init, load_init

__all__ = ["FAMILY_DEFAULTS", "KNOBS", "CriticalInit", "Knob", "apply_init", "family_knobs",
           "load_init"]
