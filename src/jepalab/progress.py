"""Progress of a long job (train, collect, plan): rich's bar on a terminal; elsewhere (a log
file, a pipe, `nohup`), where the bar draws nothing until the end, plain lines. And the
console every verb prints through (`console()`).

Off a terminal a line is printed at the first update, then at most one every `every` seconds,
and always at the last (`completed == total`), so a background run's log says how far it is.
"""
from __future__ import annotations

import os
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

OFF_TERMINAL_WIDTH = 160


def console(**options) -> Console:
    """rich's Console for a verb's messages and tables. Off a terminal (a pipe, a log file)
    rich wraps at 80 columns, which broke paths across lines and folded the tables' cells;
    there lines are not wrapped and tables get 160 columns, unless COLUMNS says otherwise."""
    out = Console(**options)
    if out.is_terminal or "COLUMNS" in os.environ:
        return out
    return Console(width=OFF_TERMINAL_WIDTH, soft_wrap=True, **options)


class Bar:
    """One task's progress: `with Bar(label, total, enabled=...) as bar: bar.update(n, status)`."""

    def __init__(self, label: str, total: int, *, enabled: bool, completed: int = 0,
                 every: float = 30.0, eta: bool = False):
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn()]
        if eta:
            columns += [TextColumn("eta"), TimeRemainingColumn()]
        self.console = console()
        self.lines = enabled and not self.console.is_terminal
        # off a terminal rich would still print the bar once as it closes: the lines say it
        self.progress = Progress(*columns, console=self.console,
                                 disable=not enabled or self.lines)
        self.task = self.progress.add_task(label, total=total, completed=completed, status="")
        self.label, self.total, self.every = label, total, every
        self.last_line: float | None = None
        self.completed = completed

    def __enter__(self) -> Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, completed: int | None = None, status: str = "") -> None:
        """Set how much is done (one more when `completed` is None) and a short status."""
        self.completed = self.completed + 1 if completed is None else completed
        self.progress.update(self.task, completed=self.completed, status=status)
        if not self.lines:
            return
        now = time.monotonic()
        if (self.last_line is None or now - self.last_line >= self.every
                or self.completed >= self.total):
            self.last_line = now
            text = f"{self.label}: {self.completed}/{self.total}" + (f" {status}" if status else "")
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
