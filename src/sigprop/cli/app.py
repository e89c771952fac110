"""The ``sigprop`` application: the typer app, its entry point, and one-line errors.

Each command parses its flags, calls the library (``import sigprop``), and formats the result:
a table by default, ``--json`` for machines. Invalid input exits with code 2 and one line naming
the parameter and its allowed range; no traceback reaches the user (SIGPROP_DEBUG=1 shows one).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Predict the trainability of deep transformers from their initialization.",
)
console = Console()


def main() -> None:
    """Entry point: usage errors become one line on stderr with exit code 2, like bad values."""
    try:
        code = _command().main(standalone_mode=False, prog_name="sigprop")
    except Exception as error:  # click's usage errors carry their message and exit code
        if not hasattr(error, "format_message"):
            raise
        message = error.format_message()
        if not message:  # no arguments at all: the help has been shown
            sys.exit(0)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 2))
    sys.exit(code or 0)


def user_errors(command):
    """Turn bad input into one line on stderr and exit code 2, and any other failure into one
    line and exit code 1 (SIGPROP_DEBUG=1 re-raises it with its traceback)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            for name, value in kwargs.items():
                check_number(name, value)
            return command(*args, **kwargs)
        except ValueError as error:  # InvalidHyperparameter, DiagnoseError and other bad input
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None
        except ModuleNotFoundError as error:  # an optional dependency this command needs
            if error.name not in ("torch", "transformers", "sklearn"):
                raise
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None
        except Exception as error:  # noqa: BLE001 - last line of defence: no tracebacks
            if os.environ.get("SIGPROP_DEBUG"):
                raise
            print(f"internal error: {type(error).__name__}: {error} "
                  "(set SIGPROP_DEBUG=1 for a traceback)", file=sys.stderr)
            raise typer.Exit(1) from None

    return run


LARGEST_NUMBER = 1e12  # no flag of sigprop takes a number this large


def check_number(name: str, value: Any) -> None:
    """A flag's number (or each of a list or pair) is finite, normal and below
    ``LARGEST_NUMBER`` in size; ``ValueError`` naming the flag otherwise. The command's own
    checks then hold it to the flag's range."""
    if isinstance(value, (list, tuple)):
        for item in value:
            check_number(name, item)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    flag = "--" + name.replace("_", "-")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{flag} must be a finite number; got {value}")
    if value != 0 and abs(value) < sys.float_info.min:
        raise ValueError(f"{flag} must be 0 or at least {sys.float_info.min:.3g} in size; got "
                         f"the subnormal {value:g}")
    if abs(value) > LARGEST_NUMBER:
        raise ValueError(f"{flag} must be at most {LARGEST_NUMBER:g} in size; got {value:g}")


@functools.lru_cache(maxsize=1)
def _command():
    """The click command of ``app``, built once per process (every command registered)."""
    return typer.main.get_command(app)
