"""Property-based tests (Hypothesis) of the theory and of the command line.

For random valid inputs, drawn from the declarations (every preset, every hyperparameter in
its plotting range, any input state): the maps return finite values in their domains (q > 0,
−1 ≤ ρ ≤ 1), a fixed point satisfies its equation, α = 0 (no branch: the identity network)
leaves every state unchanged, the number of heads does not change the wide-limit theory, and
the JSON a report prints is a description file that gives the same block back. For random
invalid inputs (out of range, non-finite, subnormal, huge, not a number) every theory command
exits with code 2 and one line on stderr. Examples that failed once are kept in Hypothesis's
example database and replayed first; the cases found before these tests existed are pinned
with ``@example``.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import sigprop
from sigprop.cli.app import main
from sigprop.spec import PRESETS, Architecture, InvalidHyperparameter
from sigprop.spec.declarations import ALIASES, HYPERPARAMETERS, LARGEST
from sigprop.theory.attention import MAX_LOGIT_SCALE

THEORY = settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])


@st.composite
def blocks(draw) -> tuple[str, dict[str, float]]:
    """A preset and values for a random subset of the hyperparameters, in their plotting
    ranges (the exclusive lower ends kept out). Nonzero values start at 1e-6: a branch scale
    b ~ 1e-298 before a post-norm underflows b² q to 0, and the norm of 0 is NaN (the exact
    map is scale-free there; the theory does not special-case it)."""
    preset = draw(st.sampled_from(sorted(PRESETS)))
    chosen = draw(st.lists(st.sampled_from(HYPERPARAMETERS), unique_by=lambda h: h.name,
                           max_size=4))
    values = {}
    for h in chosen:
        low, high = h.plot_range
        value = draw(st.one_of(st.just(low), st.floats(max(low, 1e-6), high)))
        if value > h.low or (h.closed_low and value == h.low):
            values[h.name] = value
    block = Architecture.load(preset).with_values(**values).values
    # a sub-block that erases the tokens is invalid input (tested below)
    assume(not any(block[f"skip_{s}"] == block[f"branch_{s}"] == 0 for s in ("a", "m")))
    return preset, values


@THEORY
@given(block=blocks(), depth=st.integers(1, 6), q0=st.floats(0.01, 10.0),
       rho0=st.floats(0.0, 1.0, allow_subnormal=False), n_tokens=st.integers(2, 64))
def test_trajectories_stay_in_their_domain(block, depth, q0, rho0, n_tokens):
    """Every layer has a state with q > 0 and −1 ≤ ρ ≤ 1, up to a layer the report names,
    where (and only where) the attention's logit scale σ_A·q leaves the tabulated range."""
    preset, values = block
    report = sigprop.trajectory(preset, depth=depth, q0=q0, rho0=rho0, n_tokens=n_tokens,
                                **values).to_json()
    stop = report["undefined_from"]
    layers = report["layers"][:stop]
    q = np.array([entry["q"] for entry in layers])
    rho = np.array([entry["rho"] for entry in layers])
    assert np.all(np.isfinite(q)) and np.all(q > 0)
    assert np.all(np.abs(rho) <= 1.0 + 1e-12)
    assert all(math.isfinite(entry["log_jac"]) for entry in layers)
    if stop is not None:
        assert report["hyperparameters"]["sigma_A"] * q[-1] > MAX_LOGIT_SCALE
        assert f"no state from layer {stop} on" in report["verdict"]


@THEORY
@given(block=blocks(), n_tokens=st.integers(2, 64))
def test_a_fixed_point_is_mapped_onto_itself(block, n_tokens):
    preset, values = block
    # formulas in L resolved at the preset's depth, so that one layer below is the same layer
    arch = Architecture.load(preset).with_values(**values).resolved()
    try:
        report = sigprop.exponents(arch, n_tokens=n_tokens)
    except InvalidHyperparameter as error:  # unit residuals, no depth given: said so
        assert "no norm fixed point" in str(error)
        return
    if not report.has_fixed_point:
        return  # unit residuals: no norm fixed point to check
    state = report.asymptotic
    q_star, rho_star = float(state.q_star), float(state.rho_star)
    assert math.isfinite(q_star) and q_star > 0 and -1.0 <= rho_star <= 1.0
    # λ_a is −∞ where the tokens collapse in one layer (no attention skip), never NaN
    assert not math.isnan(state.lambda_a) and math.isfinite(state.lambda_g)
    after = sigprop.trajectory(arch, depth=1, q0=q_star, rho0=rho_star,
                               n_tokens=n_tokens).to_json()["layers"][1]
    assert after["q"] == pytest.approx(q_star, rel=1e-7)
    assert after["rho"] == pytest.approx(rho_star, rel=1e-7, abs=1e-9)


@THEORY
@given(preset=st.sampled_from(["reference", "pre-ln", "post-ln", "bert"]),
       depth=st.integers(1, 5), q0=st.floats(0.05, 5.0),
       rho0=st.floats(0.0, 0.999, allow_subnormal=False))
def test_alpha_zero_is_the_identity_network(preset, depth, q0, rho0):
    """α = 0: a = 1, b = 0, every branch switched off. Pre-norm blocks keep the state as is;
    a post-norm block normalizes it (q → 1) and keeps the cosine."""
    layers = sigprop.trajectory(preset, depth=depth, q0=q0, rho0=rho0, alpha=0.0).to_json()[
        "layers"]
    post = PRESETS[preset].values.get("block") == "post"
    for entry in layers[1:]:
        assert entry["rho"] == pytest.approx(rho0, abs=1e-12)
        assert entry["q"] == pytest.approx(1.0 if post else q0, rel=1e-12)
        assert entry["log_jac"] == pytest.approx(0.0 if not post else entry["log_jac"])
    if not post:
        assert layers[-1]["log_jac"] == pytest.approx(0.0, abs=1e-12)


@THEORY
@given(block=blocks(), heads=st.integers(2, 64))
def test_the_wide_limit_does_not_depend_on_the_heads(block, heads):
    preset, values = block
    one = sigprop.exponents(preset, depth=8, heads=1, **values)
    many = sigprop.exponents(preset, depth=8, heads=heads, **values)
    for key in ("lambda_a", "lambda_g", "q_star", "rho_star"):
        np.testing.assert_array_equal(getattr(one.asymptotic, key), getattr(many.asymptotic, key))
    np.testing.assert_array_equal(one.totals, many.totals)


@THEORY
@given(block=blocks())
def test_a_blocks_description_file_gives_the_same_block_back(block, tmp_path_factory):
    preset, values = block
    arch = Architecture.load(preset).with_values(**values)
    path = tmp_path_factory.mktemp("arch") / "block.json"
    path.write_text(json.dumps(arch.description()))
    again = Architecture.load(str(path))
    assert again == arch
    depth = arch.depth or 8
    report, loaded = sigprop.exponents(arch, depth=depth), sigprop.exponents(again, depth=depth)
    for key in ("lambda_a", "lambda_g", "q_star", "rho_star"):
        np.testing.assert_array_equal(getattr(loaded.asymptotic, key),
                                      getattr(report.asymptotic, key))
    np.testing.assert_array_equal(loaded.totals, report.totals)


# --- invalid input on every theory command ------------------------------------------------

COMMANDS = {"exponents": [], "trajectory": ["--depth", "3"],
            "phase-diagram": ["--resolution", "3", "--out"], "critical": ["--points", "3"]}
NUMBERS = [*HYPERPARAMETERS, *ALIASES]
# (arithmetic such as "1/2" is a number for every hyperparameter: values may be expressions)
NOT_NUMBERS = ["nan", "inf", "-inf", "1e-320", "-4e-310", "1e400", "abc", "", "1,5", "--"]


@st.composite
def invalid_values(draw) -> tuple[str, str]:
    """A hyperparameter flag and a value outside its declared range, or not a usable number."""
    h = draw(st.sampled_from(NUMBERS))
    below = st.floats(max_value=h.low, allow_nan=False, allow_infinity=False).filter(
        lambda v: v < h.low or (v == h.low and not h.closed_low))
    above = st.floats(min_value=h.high, allow_nan=False, allow_infinity=False).filter(
        lambda v: v > h.high)
    value = draw(st.one_of(below.map(repr), above.map(repr), st.sampled_from(NOT_NUMBERS),
                           st.floats(min_value=2 * LARGEST, max_value=1e300).map(repr)))
    return h.flag, value


@st.composite
def invalid_settings(draw) -> tuple[str, str]:
    """An integer or input setting with a value it does not take."""
    flag, low, high = draw(st.sampled_from([("--n-tokens", 2, 4096), ("--depth", 1, 100_000)]))
    value = draw(st.one_of(st.integers(max_value=low - 1).map(str),
                           st.integers(min_value=high + 1).map(str),
                           st.sampled_from(["1/2", "2.5", "nan", "1e400", "abc", ""])))
    return flag, value


@settings(max_examples=3000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(command=st.sampled_from(sorted(COMMANDS)),
       invalid=st.one_of(invalid_values(), invalid_settings()))
@example(command="exponents", invalid=("--sigma-a", "1e-320"))  # found by the first fuzz
@example(command="exponents", invalid=("--alpha-m", "-0.011"))
def test_every_theory_command_refuses_invalid_numbers_in_one_line(command, invalid, capsys,
                                                                   monkeypatch, tmp_path):
    flag, value = invalid
    extra = [*COMMANDS[command], str(tmp_path)] if command == "phase-diagram" else COMMANDS[command]
    monkeypatch.setattr(sys, "argv", ["sigprop", command, *extra, f"{flag}={value}", "--json"])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 2, (command, flag, value, out, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize("sub", ["a", "m"])
def test_a_sub_block_that_erases_the_tokens_is_refused(sub, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["sigprop", "exponents", "--arch", "bert",
                                      f"--skip-{sub}", "0", f"--branch-{sub}", "0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert f"skip_{sub} and branch_{sub} are both 0" in capsys.readouterr().err

