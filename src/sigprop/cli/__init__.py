"""Command line: ``sigprop exponents | trajectory | phase-diagram | critical | simulate |
diagnose | init | sweep | analyze | predict | focus | reproduce``.

``app`` holds the commands, registered by the modules ``theory``, ``measure``, ``init``,
``train`` and ``predict``;
``main`` is the entry point. Hyperparameter and option flags come from the declarations
(``options``).
"""

from sigprop.cli.app import app, main
from sigprop.cli import init, measure, predict, theory, train  # noqa: F401  (they register the commands)

__all__ = ["app", "main"]
