"""Every odd number on every numeric flag of every command exits with code 2 and one line on
stderr, before any work: NaN, infinities, subnormals, huge values and fractions where an
integer or a plain number is expected."""

from __future__ import annotations

import sys

import pytest
import typer

from sigprop.cli import app, main

ODD = {"nan": "nan", "inf": "inf", "-inf": "-inf", "subnormal": "1e-320", "huge": "1e300",
       "fraction": "1/2"}


def _numeric_flags() -> list[tuple[str, str, int, bool]]:
    """(command, flag, number of values, takes formulas) for every numeric option."""
    group = typer.main.get_command(app)
    found = []
    for name, command in sorted(group.commands.items()):
        for parameter in command.params:
            if parameter.param_type_name != "option":
                continue
            kinds = getattr(parameter.type, "types", [parameter.type])  # a tuple: its items
            formula = parameter.metavar == "NUMBER|FORMULA"
            numeric = all(getattr(k, "name", "") in ("integer", "float") for k in kinds)
            if numeric or formula:
                flag = max(parameter.opts, key=len)
                found.append((name, flag, len(kinds), formula))
    return found


FLAGS = _numeric_flags()


def test_the_commands_have_numeric_flags():
    assert len(FLAGS) > 60
    assert ("exponents", "--sigma-w", 1, True) in FLAGS
    assert ("phase-diagram", "--x-range", 2, False) in FLAGS


@pytest.mark.parametrize("command,flag,count,formula", FLAGS,
                         ids=[f"{c} {f}" for c, f, _, _ in FLAGS])
def test_odd_numbers_exit_2_with_one_line(command, flag, count, formula, monkeypatch, capsys):
    for kind, text in ODD.items():
        if formula and kind == "fraction":
            continue  # "1/2" is a formula: a number written as arithmetic, allowed
        values = [text] + ["1"] * (count - 1)
        monkeypatch.setattr(sys, "argv", ["sigprop", command, flag, *values])
        with pytest.raises(SystemExit) as exit_:
            main()
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert exit_.value.code == 2, f"{command} {flag} {text}: exit {exit_.value.code}, " \
            f"stderr {captured.err!r}"
        assert len(lines) == 1 and lines[0].startswith("error:"), \
            f"{command} {flag} {text}: {captured.err!r}"
