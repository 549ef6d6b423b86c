"""Progress, warnings and Ctrl-C for a generation run (the command line passes a rich console)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Reporter:
    """Progress and warnings; the CLI passes a rich console, library callers may pass nothing."""

    def __init__(self, console: Any = None, progress: bool = True):
        self.console = console
        self.progress_enabled = progress and console is not None

    def warn(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"[yellow]warning:[/] {text}", highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[int], None]]:
        if not self.progress_enabled:
            yield lambda n: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class _Rate(ProgressColumn):
            def render(self, task: Any) -> Text:
                return Text(f"{task.speed or 0:.1f} img/s")

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      console=self.console, transient=False) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)


def no_stop() -> None:
    """The ``check`` of a run that cannot be interrupted."""
    return None


@contextlib.contextmanager
def interrupt_at_safe_points() -> Iterator[Callable[[], None]]:
    """Turn the first Ctrl-C into a request that ``check()`` raises as KeyboardInterrupt between chunks.

    A KeyboardInterrupt raised asynchronously inside a native call (torch, codecs) can abort the
    process; deferring it to Python code between chunks keeps every finished file. A second Ctrl-C
    interrupts at once. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield no_stop
        return
    requested = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    def check() -> None:
        if requested.is_set():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)
