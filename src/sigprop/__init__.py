"""sigprop: will a deep transformer train? Signal propagation at initialization.

The theory (pure numpy, no torch) ::

    import sigprop
    sigprop.exponents()                                  # the reference transformer
    sigprop.exponents("gpt2", depth=48, sigma_w=0.8)     # a preset at its depth
    sigprop.trajectory("pre-ln", depth=100, rho0=0.3)    # q_l, ρ_l, log‖J_l‖², l = 0..L
    sigprop.phase_diagram("branch", "sigma-w", "gpt2", depth=24).write("out")
    sigprop.critical("sigma-w", "alpha")
    sigprop.critical("sigma-w", "sigma-b", "mlp")       # the edge of chaos of a deep MLP
    sigprop.conv_trajectory(K0, depth=10, sigma_w=1.5, kernel_size=3)   # circular conv layers

and measurements of random networks (these load PyTorch on first use) ::

    sigprop.simulate("post-ln", sigma_w=[0.5, 2.0], width=512)
    sigprop.diagnose(hf="gpt2", layers=24, width=256)
    sigprop.diagnose(net="lstm", layers=64, width=128)   # also resnet18, gru, rnn, gcn
    init = sigprop.critical_init(hf="gpt2", layers=48, width=128, heads=4)   # fix it
    sigprop.apply_init(my_fresh_model, init)                                # in place

and the final test loss of a new initialization, from a finished training sweep ::

    sigprop.predict("results/sweep/sweep.sqlite", alpha=0.3, sigma_w=3.0)

Architectures: ``sigprop.Architecture`` (presets ``sigprop.PRESETS``, description files), with
every hyperparameter and option declared once in ``sigprop.spec``.
"""

from sigprop.diagrams import PhaseDiagram, phase_diagram
from sigprop.initialization import ExponentsReport, TrajectoryReport, exponents, trajectory
from sigprop.slices import CriticalReport, critical
from sigprop.spec import PRESETS, Architecture, InvalidHyperparameter, NotCovered

__all__ = [
    "PRESETS",
    "Architecture",
    "CriticalReport",
    "ExponentsReport",
    "InvalidHyperparameter",
    "NotCovered",
    "PhaseDiagram",
    "TrajectoryReport",
    "Screen",
    "ScreenedSampler",
    "apply_init",
    "conv_trajectory",
    "critical",
    "critical_init",
    "diagnose",
    "exponents",
    "phase_diagram",
    "predict",
    "simulate",
    "trajectory",
]

# Measurements, loss predictions and the exponent screen need PyTorch (and Optuna): they load
# on first use, so that the theory never imports them (the convolutional theory is numpy, and
# loads on first use too).
_LAZY = {"simulate": "sigprop.simulation", "diagnose": "sigprop.measure.diagnose",
         "predict": "sigprop.analysis.loss_model", "critical_init": "sigprop.init",
         "apply_init": "sigprop.init", "conv_trajectory": "sigprop.theory.conv",
         "Screen": "sigprop.sweep.screen", "ScreenedSampler": "sigprop.sweep.screen"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sigprop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
