"""Progress reporting: a rich bar on a terminal, plain log lines otherwise (CI, files)."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """Report progress of ``total`` units of work.

    On a TTY a rich progress bar is drawn (started at the first update, so two reporters
    used one after the other never draw at once); elsewhere a line is printed every 10%.

    >>> p = Progress(label="demo", stream=sys.stdout)
    >>> for done in range(1, 4):
    ...     p.update_count(done, 3)
    demo: 1/3
    demo: 2/3
    demo: 3/3
    >>> p.close()
    """

    def __init__(self, label: str, *, stream: Any = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._last_reported = 0

    def _start_bar(self, total: int, info: str) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(file=self.stream))
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=total, info=info)

    def update_count(self, done: int, total: int, info: str = "") -> None:
        """Record that ``done`` of ``total`` units are finished."""
        if self.interactive:
            if self._bar is None:
                self._start_bar(total, info)
            self._bar.update(self._task, completed=done, total=total, info=info)
            if done >= total:
                self.close()
            return
        step = max(1, total // 10)
        if done // step != self._last_reported // step or done == total:
            self._last_reported = done
            suffix = f"  {info}" if info else ""
            print(f"{self.label}: {done}/{total}{suffix}", file=self.stream, flush=True)

    def log(self, message: str) -> None:
        """Print a line (above the bar while one is drawn)."""
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
