"""How many CPU threads torch uses inside sigprop's verbs: one policy, in the library.

sigprop's measurements run many small kernels (per-token products at widths d ≤ 1024, a few
dozen tokens), for which torch's intra-op threads cost more in synchronization than they save:
on 2 cores, ``diagnose(hf="gpt2", layers=24, width=256)`` took 4–6× longer with torch's default
than with one thread, more so with another busy process (``benchmarks/api_speed.py``).

So every verb that runs torch work (``diagnose``, ``critical_init``, ``measure_init``,
``simulate``, the measured overlay of ``phase_diagram``) runs it inside ``torch_threads(threads)``
and restores the caller's setting afterwards. ``threads`` None means the default:
``DEFAULT_THREADS`` = 1, or the environment variable ``SIGPROP_THREADS`` (an integer ≥ 1, or
``torch`` to leave torch's own setting alone), or ``set_default_threads(n)`` for the process.
Trainings pick their own count (``sigprop.sweep`` runs one thread per worker process).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

DEFAULT_THREADS = 1
ENVIRONMENT = "SIGPROP_THREADS"
KEEP = "torch"  # leave torch's own thread count alone

_override: int | str | None = None


def set_default_threads(threads: int | str | None) -> None:
    """Set the default for this process: an integer ≥ 1, ``"torch"`` (torch's own setting), or
    None (back to ``SIGPROP_THREADS``, else ``DEFAULT_THREADS``)."""
    global _override
    _override = None if threads is None else _check(threads, "threads")


def default_threads() -> int | None:
    """The thread count the verbs use when given none; None: torch's own setting."""
    if _override is not None:
        chosen = _override
    elif os.environ.get(ENVIRONMENT):
        chosen = _check(os.environ[ENVIRONMENT].strip(), ENVIRONMENT)
    else:
        chosen = DEFAULT_THREADS
    return None if chosen == KEEP else int(chosen)


@contextlib.contextmanager
def torch_threads(threads: int | str | None = None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (None: ``default_threads()``; ``"torch"``:
    unchanged), restoring the previous count after."""
    chosen = default_threads() if threads is None else _check(threads, "threads")
    if chosen is None or chosen == KEEP:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before != chosen:
        torch.set_num_threads(int(chosen))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _check(value: int | str, name: str) -> int | str:
    """An integer ≥ 1 (given as int or text), or ``KEEP``; ValueError naming ``name``."""
    if value == KEEP:
        return KEEP
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise ValueError(f"{name} must be an integer in [1, 1024] or {KEEP!r}; got {value!r}")
    return value
