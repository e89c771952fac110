"""What a sweep is: a grid of configurations, the settings they share, and what evaluating them
returns."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Evaluate = Callable[[list[dict]], list[dict]]
"""``evaluate(configs)`` trains the given configurations together and returns one result per
configuration, in order: ``{"status": "complete" | "diverged", "train_loss", "test_loss",
"last_finite_loss", ...}`` plus any other JSON-able fields (exponents, measurements). Each
config it receives is the grid point merged with ``SweepSpec.fixed``."""

STATUSES = ("complete", "diverged")


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: every point of the Cartesian product of ``grid``, each trained with the shared
    settings ``fixed``.

    ``grid`` maps a setting to the list of its values (numbers or strings); ``fixed`` holds every
    other setting. A name may not appear in both.
    """

    grid: dict[str, list[float]]
    fixed: dict[str, float | str | int]

    def __post_init__(self) -> None:
        if not self.grid:
            raise ValueError("grid: needs at least one setting with a list of values")
        for name, values in self.grid.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"grid[{name!r}]: needs a non-empty list of values")
            for value in values:
                _check_scalar(f"grid[{name!r}]", value)
            if len({config_key({name: v}) for v in values}) != len(values):
                raise ValueError(f"grid[{name!r}]: values must be distinct, got {list(values)}")
        for name, value in self.fixed.items():
            _check_scalar(f"fixed[{name!r}]", value)
        both = sorted(set(self.grid) & set(self.fixed))
        if both:
            raise ValueError(f"grid and fixed: {both} given in both; a setting belongs to one")

    def configurations(self) -> list[dict]:
        """The grid points, in a deterministic order: the product over ``grid`` in its key order,
        the last key varying fastest."""
        names = list(self.grid)
        return [dict(zip(names, point)) for point in itertools.product(*self.grid.values())]

    def to_json(self) -> dict[str, Any]:
        return {"grid": {k: list(v) for k, v in self.grid.items()}, "fixed": dict(self.fixed)}

    def same_sweep(self, other: SweepSpec) -> bool:
        """Whether both describe the same set of configurations with the same shared settings
        (the order of keys and of values does not matter)."""
        return {config_key(c) for c in self.configurations()} == {
            config_key(c) for c in other.configurations()
        } and config_key(self.fixed) == config_key(other.fixed)


def config_key(config: dict) -> str:
    """The identity of a configuration: canonical JSON with sorted keys and numbers as floats,
    so that ``{"seed": 1}`` and ``{"seed": 1.0}`` are the same configuration."""
    canonical = {k: float(v) if _is_number(v) else v for k, v in config.items()}
    return json.dumps(canonical, sort_keys=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_scalar(where: str, value: Any) -> None:
    if _is_number(value):
        if not math.isfinite(value):
            raise ValueError(f"{where}: values must be finite numbers, got {value}")
    elif not isinstance(value, (str, bool)):
        raise ValueError(f"{where}: values must be numbers, strings or booleans, got {value!r}")
