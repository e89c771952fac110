"""Command-line options: those derived from the declarations (``sigprop.spec.declarations``),
the ones several commands share, and small formatting helpers.

``architecture_options`` adds ``--arch`` and one flag per declared hyperparameter, alias and
structural option to a typer command, and hands the command the given ones as ``values``
(name → value, only what was given). Numeric flags take numbers or formulas in the depth L
("1/sqrt(2*L)"); with ``multiple`` they may be repeated, and the command receives lists.
"""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

import sigprop
from sigprop.spec import (
    ALIASES,
    HYPERPARAMETERS,
    INPUTS,
    OPTIONS,
    PRESETS,
    Hyperparameter,
    InvalidHyperparameter,
    Option,
    parse_value,
)

ARCH_HELP = (f"Architecture: a preset ({', '.join(PRESETS)}) or a .json description file "
             "(docs/architectures.md). Flags override its values.")
_REFERENCE = {h.name: h.default for h in HYPERPARAMETERS} | {o.name: o.default for o in OPTIONS}


def architecture_options(multiple: bool = False) -> Callable[[Callable], Callable]:
    """Decorator: the command's ``arch`` and ``values`` parameters become ``--arch`` and one
    option per declaration."""

    def decorate(command: Callable) -> Callable:
        hints = typing.get_type_hints(command, include_extras=True)  # resolve string annotations
        signature = inspect.signature(command)
        signature = signature.replace(parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values()])
        declared = [_parameter(d, multiple) for d in (*ALIASES, *HYPERPARAMETERS, *OPTIONS)]
        arch = inspect.Parameter("arch", inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[Optional[str],
                                                      typer.Option("--arch", help=ARCH_HELP)])
        kept = [p for p in signature.parameters.values() if p.name not in ("arch", "values")]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            values = {}
            for parameter in declared:
                value = kwargs.pop(parameter.name)
                if value is not None and value != []:
                    values[parameter.name] = _parse(parameter.name, value)
            return command(arch=kwargs.pop("arch"), values=values, **kwargs)

        run.__signature__ = signature.replace(parameters=[*kept, arch, *declared])
        return run

    return decorate


def model_options(command: Callable) -> Callable:
    """Decorator: the command's ``which`` parameter becomes one option per declared model option
    (``sigprop.MODEL_OPTIONS``: --hf, --net, --family, --layers, --width, --heads, --blocks,
    --vocab-size, --image-size), and the command receives the given ones as ``which``."""
    hints = typing.get_type_hints(command, include_extras=True)
    signature = inspect.signature(command)
    kept = [p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values() if p.name != "which"]
    declared = [inspect.Parameter(
        o.name, inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Optional[o.kind], typer.Option(
            o.flag, help=f"{o.meaning[0].upper()}{o.meaning[1:]}.")])
        for o in sigprop.MODEL_OPTIONS]

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        which = {o.name: kwargs.pop(o.name) for o in sigprop.MODEL_OPTIONS}
        return command(which={k: v for k, v in which.items() if v is not None}, **kwargs)

    run.__signature__ = signature.replace(parameters=[*kept, *declared])
    return run


def input_option(name: str, default: Any = None) -> Any:
    """The typer option of an input setting (``n_tokens``, ``depth``, ``q0``, ``rho0``)."""
    decl = INPUTS[name]
    return typer.Option(decl.flag, help=f"{decl.meaning[0].upper()}{decl.meaning[1:]}"
                        + (f" (default {default})" if default is not None else "") + ".")


def _parameter(decl: Hyperparameter | Option, multiple: bool) -> inspect.Parameter:
    if isinstance(decl, Hyperparameter):
        default = "" if decl.expands else f"; reference default {_REFERENCE[decl.name]:g}"
        help_text = f"{decl.symbol}: {decl.meaning}; in {decl.allowed}{default}."
        if multiple:
            help_text += " Repeat for several points."
        kind = list[str] if multiple else Optional[str]
        option = typer.Option(decl.flag, help=help_text, metavar="NUMBER|FORMULA")
        return inspect.Parameter(decl.name, inspect.Parameter.KEYWORD_ONLY,
                                 default=[] if multiple else None,
                                 annotation=Annotated[kind, option])
    allowed = f" ({', '.join(decl.choices)})" if decl.choices else ""
    help_text = f"{decl.meaning[0].upper()}{decl.meaning[1:]}{allowed}; reference default " \
                f"{_REFERENCE[decl.name]}."
    if decl.kind is bool:
        flag = f"{decl.flag}/--no-{decl.key}"
        kind = Optional[bool]
    else:
        flag, kind = decl.flag, Optional[{str: str, int: int, float: float}[decl.kind]]
    return inspect.Parameter(decl.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[kind, typer.Option(flag, help=help_text)])


def _parse(name: str, value: Any) -> Any:
    """Numeric flags arrive as text: numbers or formulas in L (lists when repeated)."""
    if isinstance(value, list):
        return [_parse(name, v) for v in value]
    if not isinstance(value, str) or name not in {h.name for h in (*HYPERPARAMETERS, *ALIASES)}:
        return value
    try:
        return parse_value(value)
    except InvalidHyperparameter as error:
        raise InvalidHyperparameter(f"{name}: {error}") from None


NTokens = Annotated[int, input_option("n_tokens", 16)]
Depth = Annotated[Optional[int], input_option("depth")]
Q0 = Annotated[float, input_option("q0", 1.0)]
Rho0 = Annotated[float, input_option("rho0", 0.0)]
# The finite-depth exponents start from nearly collapsed inputs by default (ρ0 = 1: the limit).
ExponentRho0 = Annotated[float, typer.Option(
    "--rho0", help="Input token cosine ρ_0 of the finite-depth exponents (default 1: the limit "
    "ρ0 → 1 of nearly collapsed inputs, where λ_a^(L) = 0 is the edge of chaos).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Width = Annotated[int, typer.Option("--width", help="Width d of the simulated networks.")]
Seeds = Annotated[int, typer.Option("--seeds", help="Number of random networks per point.")]
Seed = Annotated[int, typer.Option("--seed", help="First seed; networks use seed, seed + 1, ….")]
Probes = Annotated[int, typer.Option("--n-probes", help="Random probes for ‖J‖² per network.")]
ModelFactory = Annotated[Optional[str], typer.Argument(
    help="Your model as 'module.path:factory' (a function returning an nn.Module, called with "
         "seed= if it accepts it).")]
InitFile = Annotated[Optional[Path], typer.Option(
    "--apply", help="A critical initialization written by `sigprop init --out`: applied to "
                    "every freshly built model first.")]
Device = Annotated[str, typer.Option("--device", help="Where torch runs: auto (CUDA when "
                                     "available), cpu, cuda or cuda:N. The theory stays on the "
                                     "CPU.")]
AxisOpt = Annotated[Optional[str], typer.Option(help="Axis: any numeric hyperparameter or alias "
                                                "(alpha, branch, sigma-w, …).")]
Range = Annotated[Optional[tuple[float, float]], typer.Option(help="Range LOW HIGH.")]


def signed(value: float | None) -> str:
    return "undefined" if value is None else f"{value:+.4f}"


def fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)
