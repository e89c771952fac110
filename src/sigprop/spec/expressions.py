"""Hyperparameters that depend on the depth L, written as formulas: "1/sqrt(2*L)", "(2*L)**0.25".

GPT-2 scales its residual branches by 1/sqrt(2L) and DeepNorm its skip paths by (2L)^(1/4), so
a preset or a description file may give such a value as a formula in L. It is resolved when the
depth is known. The grammar is small on purpose: numbers, the name L, + − * / **, parentheses,
and the functions sqrt, log, exp.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass

from sigprop.spec.errors import InvalidHyperparameter

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.Pow: operator.pow}
_FUNCTIONS = {"sqrt": math.sqrt, "log": math.log, "exp": math.exp}


@dataclass(frozen=True)
class DepthFormula:
    """A value that is a formula in the depth L; ``formula(depth)`` evaluates it."""

    text: str

    def __post_init__(self) -> None:
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError:
            raise InvalidHyperparameter(self._grammar_error()) from None
        self._check(tree.body)

    def __call__(self, depth: int) -> float:
        try:
            return float(self._evaluate(ast.parse(self.text, mode="eval").body, depth))
        except (ArithmeticError, ValueError) as error:  # 1/0, exp(1000), sqrt(-1), log(0)
            where = f" at L = {depth}" if self.uses_depth else ""
            raise InvalidHyperparameter(f"{self.text!r} cannot be evaluated{where}: "
                                        f"{error}") from None

    @property
    def uses_depth(self) -> bool:
        """Whether the formula names L (else it is a plain number written as arithmetic)."""
        tree = ast.parse(self.text, mode="eval")
        return any(isinstance(node, ast.Name) and node.id == "L" for node in ast.walk(tree))

    def __str__(self) -> str:
        return self.text

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self._check(node.operand)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _FUNCTIONS and len(node.args) == 1 and not node.keywords:
            self._check(node.args[0])
        elif not (isinstance(node, ast.Name) and node.id == "L") and not (
                isinstance(node, ast.Constant) and type(node.value) in (int, float)):
            raise InvalidHyperparameter(self._grammar_error())

    def _evaluate(self, node: ast.AST, depth: int) -> float:
        if isinstance(node, ast.BinOp):
            return _OPERATORS[type(node.op)](self._evaluate(node.left, depth),
                                             self._evaluate(node.right, depth))
        if isinstance(node, ast.UnaryOp):
            value = self._evaluate(node.operand, depth)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Call):
            return _FUNCTIONS[node.func.id](self._evaluate(node.args[0], depth))
        if isinstance(node, ast.Name):
            return float(depth)
        return float(node.value)

    def _grammar_error(self) -> str:
        return (f"{self.text!r} is neither a number nor a formula in the depth L (numbers, L, "
                "+ - * / **, parentheses, sqrt, log, exp; e.g. '1/sqrt(2*L)')")


def parse_value(text: str) -> float | DepthFormula:
    """A number (arithmetic without L, such as "1/2", evaluated), or a ``DepthFormula`` when
    ``text`` names L."""
    try:
        return float(text)
    except ValueError:
        formula = DepthFormula(text.strip())
    return formula if formula.uses_depth else formula(0)
