"""What a sweep is: its configurations (a grid, quasi-random samples of ranges, or both), the
settings they share, and what evaluating them returns."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import qmc

Evaluate = Callable[[list[dict]], list[dict]]
"""``evaluate(configs)`` trains the given configurations together and returns one result per
configuration, in order: ``{"status": "complete" | "diverged", "train_loss", "test_loss",
"last_finite_loss", ...}`` plus any other JSON-able fields (exponents, measurements). Each
config it receives is its swept values merged with ``SweepSpec.fixed``."""

STATUSES = ("complete", "diverged")


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: every point of the Cartesian product of ``grid`` crossed with ``samples``
    quasi-random points of the box ``sampled``, each trained with the shared settings ``fixed``.

    ``grid`` maps a setting to the list of its values (numbers or strings). ``sampled`` maps a
    setting to its range [low, high]; the points are a scrambled Halton sequence of the box
    (a low-discrepancy "random search": it fills the box more evenly than independent draws,
    so a predictor's cross-validation sees off-grid initializations), fixed by
    ``sample_seed``; ``sample_positions``, when given, picks ``samples`` points of that
    sequence by position instead of its first ``samples`` (a screen chose them:
    ``sigprop.sweep.screen``, described in ``screen``). ``fixed`` holds every other setting. A
    name belongs to one of the three.
    """

    grid: dict[str, list[float]]
    fixed: dict[str, float | str | int]
    sampled: dict[str, list[float]] = field(default_factory=dict)
    samples: int = 0
    sample_seed: int = 0
    sample_positions: list[int] | None = None
    screen: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.grid and not self.sampled:
            raise ValueError("grid or sampled: a sweep needs at least one swept setting")
        for name, values in self.grid.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"grid[{name!r}]: needs a non-empty list of values")
            for value in values:
                _check_scalar(f"grid[{name!r}]", value)
            if len({config_key({name: v}) for v in values}) != len(values):
                raise ValueError(f"grid[{name!r}]: values must be distinct, got {list(values)}")
        for name, bounds in self.sampled.items():
            if (not isinstance(bounds, (list, tuple)) or len(bounds) != 2
                    or not all(_is_number(b) and math.isfinite(b) for b in bounds)
                    or not bounds[0] < bounds[1]):
                raise ValueError(f"sampled[{name!r}]: needs [low, high] with finite low < high, "
                                 f"got {bounds!r}")
        if self.sampled and (isinstance(self.samples, bool) or not isinstance(self.samples, int)
                             or self.samples < 1):
            raise ValueError(f"samples: must be an integer >= 1 when ranges are sampled; "
                             f"got {self.samples!r}")
        if not self.sampled and self.samples:
            raise ValueError(f"samples: {self.samples} points asked for but no range to sample")
        if isinstance(self.sample_seed, bool) or not isinstance(self.sample_seed, int) \
                or self.sample_seed < 0:
            raise ValueError(f"sample_seed: must be an integer >= 0; got {self.sample_seed!r}")
        if self.sample_positions is not None:
            positions = self.sample_positions
            if (not isinstance(positions, (list, tuple)) or len(positions) != self.samples
                    or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                               for i in positions)
                    or any(b <= a for a, b in zip(positions, positions[1:]))):
                raise ValueError(f"sample_positions: must be {self.samples} increasing "
                                 f"integers >= 0 (one per sample); got {positions!r:.200}")
        for name, value in self.fixed.items():
            _check_scalar(f"fixed[{name!r}]", value)
        parts = {"grid": set(self.grid), "sampled": set(self.sampled), "fixed": set(self.fixed)}
        for first, second in itertools.combinations(parts, 2):
            both = sorted(parts[first] & parts[second])
            if both:
                raise ValueError(f"{first} and {second}: {both} given in both; a setting "
                                 "belongs to one")

    def configurations(self) -> list[dict]:
        """The configurations, in a deterministic order: for each sampled point in sequence
        order, the product over ``grid`` in its key order, the last key varying fastest."""
        names = list(self.grid)
        grid_points = [dict(zip(names, point)) for point in itertools.product(*self.grid.values())]
        return [{**sample, **point} for sample in self.sample_points() for point in grid_points]

    def sample_points(self) -> list[dict]:
        """The ``samples`` points of the ``sampled`` box (one empty point if nothing is
        sampled): the first ones of ``sequence``, or those at ``sample_positions``."""
        if not self.sampled:
            return [{}]
        positions = self.sample_positions
        if positions is None:
            return self.sequence(self.samples)
        points = self.sequence(positions[-1] + 1)
        return [points[i] for i in positions]

    def sequence(self, n: int) -> list[dict]:
        """The first ``n`` points of the scrambled Halton sequence of the ``sampled`` box (seed
        ``sample_seed``; a longer sequence starts with the shorter one), values rounded to 6
        significant digits so that they read and store exactly (and kept inside the box)."""
        names = list(self.sampled)
        unit = qmc.Halton(d=len(names), scramble=True, seed=self.sample_seed).random(n)
        low, high = np.array([self.sampled[k] for k in names], dtype=float).T
        rounded = np.vectorize(lambda v: float(f"{v:.6g}"), otypes=[float])(
            qmc.scale(unit, low, high))
        return [dict(zip(names, map(float, row))) for row in np.clip(rounded, low, high)]

    def to_json(self) -> dict[str, Any]:
        return {"grid": {k: list(v) for k, v in self.grid.items()}, "fixed": dict(self.fixed),
                "sampled": {k: list(v) for k, v in self.sampled.items()},
                "samples": self.samples, "sample_seed": self.sample_seed,
                "sample_positions": self.sample_positions, "screen": self.screen}

    @classmethod
    def from_json(cls, attrs: dict[str, Any]) -> SweepSpec:
        """The spec from ``to_json``'s dict (studies written before sampling have no ranges,
        those written before screening no positions)."""
        return cls(grid=attrs["grid"], fixed=attrs["fixed"], sampled=attrs.get("sampled", {}),
                   samples=attrs.get("samples", 0), sample_seed=attrs.get("sample_seed", 0),
                   sample_positions=attrs.get("sample_positions"), screen=attrs.get("screen"))

    def swept(self) -> list[str]:
        """The names of the swept settings, sampled ones first."""
        return [*self.sampled, *self.grid]

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
