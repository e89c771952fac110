"""The architecture holds: the command line uses only public names, no module imports another in
a circle, packages import only downwards, and every public report speaks the same way."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

import sigprop

SOURCE = Path(sigprop.__file__).parent

# Each package of sigprop and the packages it may import (its own layer and those below). The
# order is the architecture: the description, the theory and the runtime at the bottom; models,
# data and figures; measurement; initialization and training; the public verbs; the experiment
# wing; the command line on top.
LAYERS = [
    {"spec", "runtime"},
    {"theory", "sweep"},
    {"analysis"},
    {"plots", "models", "data"},
    {"measure"},
    {"init", "train"},
    {"api"},
    {"experiment"},
    {"sigprop"},  # the package's face (``sigprop/__init__.py``), a table of the public names
    {"cli", "__main__"},
]
PUBLIC_FOR_THE_CLI = {"sigprop", "sigprop.spec"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The sigprop modules ``path`` imports (anywhere in it, except under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "sigprop"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sigprop":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if f"{node.module}.{a.name}" in MODULES}
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sigprop"


def test_the_command_line_imports_only_public_names():
    offenders = []
    for name, path in MODULES.items():
        if _package(name) != "cli":
            continue
        for imported in _imports(path):
            if _package(imported) != "cli" and imported not in PUBLIC_FOR_THE_CLI:
                offenders.append(f"{name} imports {imported}")
    assert not offenders, "CLI modules must import only `sigprop` and `sigprop.spec`: " + \
        "; ".join(sorted(offenders))


def test_a_private_import_in_the_command_line_is_caught(tmp_path):
    """The check above can fail: a CLI module that reaches into sigprop.measure is found."""
    module = tmp_path / "bad.py"
    module.write_text("from sigprop.measure.diagnose import verdict\nimport sigprop\n")
    assert _imports(module) - PUBLIC_FOR_THE_CLI == {"sigprop.measure.diagnose"}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return found


def _graph() -> dict[str, set[str]]:
    """Module → the sigprop modules it imports (a package's import of its own submodules for
    re-export counts too)."""
    return {name: {m for m in _imports(path) if m in MODULES and m != name}
            for name, path in MODULES.items()}


def test_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, f"modules that import each other in a circle: {cycles}"


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_packages_import_only_downwards():
    level = {package: i for i, layer in enumerate(LAYERS) for package in layer}
    packages = {_package(name) for name in MODULES}
    assert packages <= set(level), f"packages without a layer: {packages - set(level)}"
    upward = sorted(
        f"{name} imports {imported}" for name, path in MODULES.items()
        for imported in _imports(path)
        if level[_package(imported)] > level[_package(name)])
    assert not upward, "upward imports: " + "; ".join(upward)


def test_the_theory_never_imports_torch():
    for name, path in MODULES.items():
        if _package(name) in ("theory", "spec"):
            tree = ast.parse(path.read_text())
            names = {a.name.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.Import) for a in node.names}
            names |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom)}
            assert "torch" not in names, f"{name} imports torch"


def test_every_public_name_resolves_and_is_documented():
    for name in sigprop.__all__:
        value = getattr(sigprop, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"sigprop.{name} has no docstring"


@pytest.mark.parametrize("make", [
    lambda: sigprop.exponents(),
    lambda: sigprop.exponents("pre-ln", depth=8),
    lambda: sigprop.trajectory(depth=6),
    lambda: sigprop.critical("alpha", "sigma-w", points=3),
    lambda: sigprop.phase_diagram("alpha", "sigma-w", resolution=8),
], ids=["exponents", "exponents-depth", "trajectory", "critical", "phase_diagram"])
def test_every_report_has_a_verdict_a_short_repr_and_json(make):
    report = make()
    text = report.verdict()
    assert isinstance(text, str) and text
    shown = repr(report)
    assert "\n" not in shown and len(shown) < 300 and "array(" not in shown
    payload = report.to_json()
    json.dumps(payload, allow_nan=False)
    assert payload["verdict"] == text


def test_the_theory_works_without_torch_and_the_rest_says_what_to_install():
    """PyTorch is optional: with it blocked, the theory verbs and commands run, and a verb or
    command that needs it says how to install it (exit 2 on the command line)."""
    import subprocess

    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import sigprop\n"
        "assert sigprop.exponents().phase == 'ordered'\n"
        "sigprop.critical('alpha', 'sigma-w', points=3)\n"
        "try:\n"
        "    sigprop.diagnose\n"
        "except ModuleNotFoundError as error:\n"
        "    assert 'pip install torch' in str(error), error\n"
        "else:\n"
        "    raise AssertionError('sigprop.diagnose loaded without torch')\n"
        "sys.argv = ['sigprop', 'diagnose', '--hf', 'gpt2']\n"
        "from sigprop.cli import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install torch" in lines[0], done.stderr
