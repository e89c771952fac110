"""The public face of sigprop: every verb and report a user calls, re-exported by ``sigprop``.

The theory (numpy and scipy only; ``import sigprop`` and these calls never load PyTorch):

* ``exponents`` → ``ExponentsReport``: λ_a, λ_g and the attracting state at one initialization;
* ``trajectory`` → ``TrajectoryReport``: q_l, ρ_l, log‖J_l‖² layer by layer;
* ``phase_diagram`` → ``PhaseDiagram``: both exponents over two hyperparameters;
* ``critical`` → ``CriticalReport``: where λ_a = 0, λ_g = 0 and both;
* ``conv_trajectory``: the wide-limit Gram map of circular convolutions.

Measurements and initializations of PyTorch models (load torch on first use):

* ``simulate`` → ``SimulationReport``: random networks of a declared block against the theory;
* ``diagnose`` → ``Diagnosis``: any model at initialization (``ModelSource`` names it);
* ``critical_init`` → ``CriticalInit``: knob values that put a model at the edge;
  ``apply_init``, ``measure_init``, ``initialized_model``, ``load_init`` use one.

Training experiments, their analysis and the search they guide:

* ``run_sweep``, ``analyze``, ``reproduce``, ``focus``: the paper's experiment (Optuna studies);
* ``rescue`` → ``RescueReport``: deep networks whose defaults do not train, against the
  published fixes;
* ``predict``, ``predictions`` → ``LossPrediction``: the final loss of a new initialization;
* ``Screen``, ``ScreenedSampler``: reject initializations far from criticality before training.

Every report has ``verdict()`` (what it means, in the words of ``sigprop.theory.regimes``), a
short ``repr`` and ``to_json()`` (what the command line prints with ``--json``).
"""

from __future__ import annotations

import importlib

PUBLIC: dict[str, str] = {
    # the one description
    "Architecture": "sigprop.spec",
    "PRESETS": "sigprop.spec",
    "InvalidHyperparameter": "sigprop.spec",
    "NotCovered": "sigprop.spec",
    # the theory
    "exponents": "sigprop.api.exponents",
    "ExponentsReport": "sigprop.api.exponents",
    "trajectory": "sigprop.api.trajectory",
    "TrajectoryReport": "sigprop.api.trajectory",
    "phase_diagram": "sigprop.api.phase_diagram",
    "PhaseDiagram": "sigprop.api.phase_diagram",
    "critical": "sigprop.api.critical",
    "CriticalReport": "sigprop.api.critical",
    "conv_trajectory": "sigprop.theory.conv",
    # measurement and initialization of PyTorch models
    "simulate": "sigprop.api.simulate",
    "SimulationReport": "sigprop.api.simulate",
    "diagnose": "sigprop.api.diagnose",
    "Diagnosis": "sigprop.measure.diagnose",
    "DiagnoseError": "sigprop.measure.blocks",
    "ModelSource": "sigprop.measure.source",
    "MODEL_OPTIONS": "sigprop.spec",
    "critical_init": "sigprop.api.init",
    "measure_init": "sigprop.api.init",
    "initialized_model": "sigprop.api.init",
    "apply_init": "sigprop.init.result",
    "load_init": "sigprop.init.result",
    "CriticalInit": "sigprop.init.result",
    "KNOBS": "sigprop.init.knobs",
    "set_default_threads": "sigprop.runtime.threads",
    # the training experiment
    "run_sweep": "sigprop.experiment.verbs",
    "Sweep": "sigprop.experiment.verbs",
    "analyze": "sigprop.experiment.verbs",
    "reproduce": "sigprop.experiment.verbs",
    "focus": "sigprop.experiment.verbs",
    "rescue": "sigprop.experiment.rescue.suite",
    "RescueReport": "sigprop.experiment.rescue.report",
    # the loss predictor and the exponent screen
    "predict": "sigprop.experiment.loss_model",
    "predictions": "sigprop.experiment.loss_model",
    "predictions_frame": "sigprop.experiment.loss_model",
    "LossPrediction": "sigprop.experiment.loss_model",
    "Screen": "sigprop.experiment.screen",
    "ScreenedSampler": "sigprop.sweep.screen",
}
"""Every public name and the module that defines it."""


OPTIONAL = {"torch": "PyTorch: pip install torch (a CPU build: pip install torch==2.13.0)",
            "transformers": "Hugging Face transformers: pip install 'sigprop[hf]'",
            "sklearn": "scikit-learn: pip install 'sigprop[rescue]'"}
"""The optional dependencies, and how to install each. ``pip install sigprop`` is the theory
(numpy, scipy, matplotlib, pandas, optuna): phase diagrams, exponents, critical points and the
screen's theory need no PyTorch, whose CUDA builds weigh gigabytes. Measuring, initializing
and training a model needs PyTorch."""


def load(name: str):
    """The public object ``name`` (its module is imported on first use); a missing optional
    dependency is named with how to install it."""
    try:
        module = PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'sigprop' has no attribute {name!r}") from None
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as error:
        if error.name not in OPTIONAL:
            raise
        raise ModuleNotFoundError(f"sigprop.{name} needs {OPTIONAL[error.name]}",
                                  name=error.name) from None
