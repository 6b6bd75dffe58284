"""`wangge simulate` and `wangge verify` (the work is in `wangge.simulation`)."""

import signal
from pathlib import Path
from typing import Annotated

import typer

from wangge.commands.common import console, fail, progress_bar, raise_keyboard_interrupt
from wangge.settings import DatabaseSettings, KafkaSettings


def simulate(
    week: Annotated[
        str | None,
        typer.Option(help="ISO week to simulate, e.g. 2020-W37; without it, a live stream"),
    ] = None,
    speed: Annotated[
        str | None,
        typer.Option(help="N (N× real time) or max; default max for --week, 1 when live"),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="at most this many events a second")] = None,
    seed: Annotated[int, typer.Option(help="random seed; same seed, same week")] = 2020,
    workers: Annotated[
        int | None, typer.Option(help="simulate N workers (a deterministic subset)")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="write the expected patrols and statuses (JSON)")
    ] = None,
    tail_hours: Annotated[
        float,
        typer.Option(
            help="idle pings this long after the week, so the engine sees it end"
            " (≥ 48 freezes the week: only once the consumers have caught up)"
        ),
    ] = 6.0,
    background: Annotated[
        bool, typer.Option("--background", hidden=True, help="run as `wangge up`'s child")
    ] = False,
) -> None:
    """Produce a week of realistic check-ins and incidents to Kafka, faults included."""
    from geodata.errors import WanggeError
    from wangge.simulation.cli import SimulateOptions, log_progress, print_summary, run_simulation

    # SIGTERM (`kill`, `wangge up` stopping) ends a run as Ctrl-C does: flushed, summed up.
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    options = SimulateOptions(week, speed, rate, seed, workers, truth, tail_hours, background)
    database, kafka = DatabaseSettings().url, KafkaSettings()
    try:
        if background:
            run = run_simulation(database, kafka, options, log_progress(console))
        else:
            with progress_bar() as progress:
                run = run_simulation(database, kafka, options, progress)
        print_summary(run, console)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    except KeyboardInterrupt:
        if not background:
            raise
        console.print("simulator stopped")  # while planning, or a second signal while flushing


def verify(
    truth: Annotated[Path, typer.Option(exists=True, help="truth file of `wangge simulate`")],
    week: Annotated[str, typer.Option(help="ISO week, e.g. 2020-W37")],
) -> None:
    """Compare the platform's patrols and statuses with a simulation's truth; 1 if any differ."""
    from geodata.errors import WanggeError
    from wangge.simulation.verify import run_verify

    try:
        comparison = run_verify(DatabaseSettings().url, truth, week, console)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    if not comparison.agrees:
        raise typer.Exit(code=1)
