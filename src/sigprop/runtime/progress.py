"""Progress of long work: a rich progress bar on stderr, or nothing."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True
                 ) -> Iterator[Callable[[], None] | None]:
    """Yield a callback that advances a transient bar of ``total`` steps by one (None when not
    ``enabled``: the work then runs silently)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(description), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task(description, total=total)
    with bar:
        yield lambda: bar.advance(task)
