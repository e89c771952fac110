"""sigprop: will a deep network train? Signal propagation at initialization.

The theory (pure numpy, no torch) ::

    import sigprop
    sigprop.exponents()                                  # the reference transformer
    sigprop.exponents("gpt2", depth=48, sigma_w=0.8)     # a preset at its depth
    sigprop.trajectory("pre-ln", depth=100, rho0=0.3)    # q_l, ρ_l, log‖J_l‖², l = 0..L
    sigprop.phase_diagram("branch", "sigma-w", "gpt2", depth=24).write("out")
    sigprop.critical("alpha", "sigma-w")                 # the zero curves, x then y
    sigprop.critical("sigma-b", "sigma-w", "mlp")        # the edge of chaos of a deep MLP

and measurements of PyTorch models (these load PyTorch on first use) ::

    sigprop.diagnose(my_model)                           # an nn.Module, a factory, hf=, net=
    sigprop.diagnose(hf="gpt2", layers=24, width=256)
    init = sigprop.critical_init(my_factory)             # fix its initialization
    sigprop.apply_init(my_fresh_model, init)             # in place

Every public name is listed, with where it lives, in ``sigprop.api``.
"""

from sigprop.api import PUBLIC, load

__all__ = sorted(PUBLIC)


def __getattr__(name: str):
    return load(name)


def __dir__() -> list[str]:
    return __all__
