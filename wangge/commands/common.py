"""What every command shares: the consoles, the error exit, the progress bar, the tables."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from wangge import services

console = Console()
err_console = Console(stderr=True)

ProgressCallback = Callable[[str, int, int], None]


def fail(message: str) -> typer.Exit:
    """Print the error on stderr; the exit (code 1) for the command to raise."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


@contextmanager
def progress_bar() -> Iterator[ProgressCallback]:
    """A rich progress bar driven by the core's `progress(step, done, total)` callbacks."""
    with Progress(
        TextColumn("{task.description:<36}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task: TaskID | None = None

        def update(step: str, done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = progress.add_task(step, total=total)
            progress.update(task, description=step, completed=done, total=total)

        yield update


def print_reports(reports: list[services.ServiceReport]) -> None:
    """Print the services' states as one table."""
    table = Table("service", "state", "details")
    for report in reports:
        table.add_row(report.name, report.state, "\n".join(report.details))
    console.print(table)


def raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    """A signal handler that stops the command as Ctrl-C does."""
    raise KeyboardInterrupt
