"""`wangge simulate`: a simulated week (or a live stream) of the city's phones, onto Kafka."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from geodata.compliance import IsoWeek
from geodata.compliance.report import parse_week
from geodata.contract import Topics
from geodata.db.engine import create_db_engine
from geodata.errors import WanggeError
from wangge import services
from wangge.settings import IntakeSettings, KafkaSettings
from wangge.simulation import SimulationConfig, simulate_week
from wangge.simulation.db import load_world
from wangge.simulation.week import Progress

if TYPE_CHECKING:
    from wangge.simulation.producer import Pacing, ProduceStats
    from wangge.simulation.week import SimulatedWeek


#: `wangge up --simulate --week live`: this week as it happens, in real time.
LIVE_WEEK = "live"
#: `wangge up --simulate` replays a week this many times faster than real time.
UP_REPLAY_SPEED = "60"
#: A replay cuts a longer silence between messages to this many simulated seconds, so
#: its nights pass in seconds (at 60×, two).
REPLAY_MAX_IDLE_S = 120.0
#: A replay starts this many simulated seconds before its first check-in (at 60×, one);
#: the night's few reports before then are sent at once.
REPLAY_LEAD_S = 60.0


class SimulationRefused(WanggeError):
    """Options that cannot make a simulation (a live stream faster than real time, …)."""

    code = "simulation_refused"


@dataclass(frozen=True)
class SimulateOptions:
    """The command's options, parsed."""

    week: str | None
    speed: str | None
    rate: float | None
    seed: int
    workers: int | None
    truth: Path | None
    tail_hours: float
    #: Run as `wangge up`'s child: progress as occasional log lines, and being stopped
    #: part-way through a week is how it ends, not an error.
    background: bool = False


def parse_speed(speed: str | None, live: bool) -> float | None:
    """N× real time as a float, None for `max`; live streams run at real time only."""
    if live:
        if speed not in (None, "1", "1.0"):
            # A phone cannot report a fix from its future: event time must follow the clock.
            raise SimulationRefused("a live stream runs at real time: drop --speed or use --week")
        return 1.0
    if speed is None or speed == "max":
        return None
    try:
        value = float(speed)
    except ValueError:
        raise SimulationRefused(f"--speed takes a number or max, not {speed!r}") from None
    if value <= 0:
        raise SimulationRefused("--speed must be positive")
    return value


def log_progress(console: Console, every_s: float = 600.0) -> Progress:
    """Progress as a plain line every `every_s` seconds, for output shared with other logs
    (`wangge up`'s: rare, so that the line with the map's address stays in view)."""
    last: dict[str, float] = {}

    def show(step: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last.get("shown", -every_s) >= every_s or (total and done == total):
            last["shown"] = now
            console.print(f"simulator: {step} {done:,}/{total:,}")

    return show


def up_simulator_args(
    week: str | None, speed: str | None, rate: float | None, seed: int, workers: int | None
) -> list[str]:
    """`wangge simulate` arguments for `wangge up --simulate`, refused before anything starts.

    Without a week, the last complete week is replayed at 60× real time: every event of it
    lies in the past, so none is refused as a fix from the future, and check-ins flow at
    any hour (a live stream of this week is quiet at night). `live` is that live stream.
    """
    live = week == LIVE_WEEK
    if live:
        parse_speed(speed, live=True)
        args = ["simulate"]
    else:
        if week is None:
            tz = SimulationConfig().compliance.tz
            week = str(IsoWeek.week_of(datetime.now(UTC) - timedelta(days=7), tz))
        parse_week(week)
        speed = speed or UP_REPLAY_SPEED
        parse_speed(speed, live=False)
        args = ["simulate", "--week", week, "--speed", speed]
    if workers is not None:
        if workers < 1:
            raise SimulationRefused("--workers must be at least 1")
        args += ["--workers", str(workers)]
    if rate is not None:
        args += ["--rate", str(rate)]
    return [*args, "--seed", str(seed), "--background"]


def replayed_week(simulator_args: list[str]) -> str | None:
    """The ISO week `wangge up`'s simulator replays, None for a live stream (or none)."""
    if "--week" not in simulator_args:
        return None
    return simulator_args[simulator_args.index("--week") + 1]


def map_path(simulator_args: list[str]) -> str:
    """The map's path `wangge up` prints: on the replayed week (the map reads `?week=`),
    since the map opens on the current week otherwise."""
    week = replayed_week(simulator_args)
    return f"/map?week={week}" if week else "/map"


def replay_intake_env(simulator_args: list[str]) -> dict[str, str]:
    """Settings that let the consumers and the API take and show the replayed week.

    The API answers compliance as of the compliance engine's clock (the replay's moment)
    rather than the wall clock, after the week's end, which would call everyone missed.
    Events older than WANGGE_EVENT_MAX_AGE_DAYS are refused; a replay of a week further
    back than that widens the limit for the processes `wangge up` starts, no more.
    """
    week = replayed_week(simulator_args)
    if week is None:
        return {}
    env = {"WANGGE_COMPLIANCE_CLOCK": "engine"}
    monday = parse_week(week).monday
    # The oldest event of the week is its Monday's, with a day's margin.
    needed = (datetime.now(UTC).date() - monday).days + 2
    configured = IntakeSettings().event_max_age_days
    if configured != 0 and needed > configured:
        env["WANGGE_EVENT_MAX_AGE_DAYS"] = str(needed)
    return env


@dataclass(frozen=True)
class SimulationRun:
    """What a run planned and produced, for the summary."""

    options: SimulateOptions
    week: IsoWeek
    counts: dict[str, int]
    messages: int
    stats: "ProduceStats"
    topics: Topics
    left_out: int


def replay_pacing(simulated: "SimulatedWeek", speed: float | None, rate: float | None) -> "Pacing":
    """How a replay of a past week goes: from just before its first check-in, not from
    Monday 00:00 (the first walks begin some seven simulated hours later), the nights cut."""
    from wangge.simulation.producer import Pacing

    first = simulated.first_checkin_s()
    return Pacing(
        speed=speed,
        rate=rate,
        anchor_s=None if first is None else first - REPLAY_LEAD_S,
        max_idle_s=REPLAY_MAX_IDLE_S,
    )


def run_simulation(
    database_url: str, kafka: KafkaSettings, options: SimulateOptions, progress: Progress
) -> SimulationRun:
    """Plan the week from the database's city, write the truth, produce every message."""
    from wangge.simulation.producer import Pacing, produce_week

    config = SimulationConfig(tail_hours=options.tail_hours)
    tz = config.compliance.tz
    live = options.week is None
    week = IsoWeek.week_of(datetime.now(UTC), tz) if live else parse_week(str(options.week))
    speed = parse_speed(options.speed, live)
    if options.workers is not None and options.workers < 1:
        raise SimulationRefused("--workers must be at least 1")
    engine = create_db_engine(database_url)
    try:
        progress("Reading grids and workers", 0, 1)
        until = week.end(tz) + timedelta(hours=config.tail_hours)
        world, left_out = load_world(engine, week.start(tz), until)
    finally:
        engine.dispose()
    if not world.workers:
        raise SimulationRefused("the database has no worker assigned all week: load a dataset")
    simulated = simulate_week(
        world, week, seed=options.seed, workers=options.workers, config=config, progress=progress
    )
    if options.truth is not None:
        options.truth.write_text(simulated.truth.to_json(), encoding="utf-8")
    services.ensure_topics(kafka.bootstrap, kafka.topic_partitions, kafka.topics)
    pacing = (
        replay_pacing(simulated, speed, options.rate)
        if not live
        else Pacing(speed=speed, rate=options.rate, anchor_s=time.time())
    )
    stats = produce_week(simulated, kafka.bootstrap, kafka.topics, pacing, progress)

    return SimulationRun(
        options, week, simulated.truth.counts, len(simulated), stats, kafka.topics, left_out
    )


def print_summary(run: SimulationRun, console: Console) -> None:
    """The run's figures; raises SimulationRefused if it did not produce everything."""
    counts, stats = run.counts, run.stats
    table = Table(f"simulated {run.week}", "count", title="wangge simulate")
    rows: list[tuple[str, int | str]] = [
        ("workers", counts["workers"]),
        ("walks planned", counts["walks"]),
        ("distinct check-ins (incl. idle pings)", counts["checkins"]),
        ("duplicate deliveries (retries)", counts["duplicate_deliveries"]),
        ("walks uploaded late", counts["late_walks"]),
        ("poor-accuracy fixes", counts["poor_accuracy_fixes"]),
        ("teleports", counts["teleports"]),
        ("phones in GCJ-02", counts["phones_gcj02"]),
        ("phones with a skewed clock", counts["phones_skewed_clock"]),
        ("incidents", counts["incidents"]),
        ("malformed messages", counts["malformed"]),
        ("messages produced", stats.total),
    ]
    for name, value in rows:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else value)
    console.print(table)
    rate = stats.total / stats.seconds if stats.seconds else 0.0
    console.print(
        f"produced {stats.total:,} of {run.messages:,} messages in {stats.seconds:,.1f} s"
        f" ({rate:,.0f}/s) to {run.topics.checkins} and {run.topics.incidents}"
    )
    if run.left_out:
        console.print(f"{run.left_out} worker(s) not simulated: not in one grid all week")
    if run.options.truth is not None:
        console.print(f"truth written to {run.options.truth}")
    if stats.failed:
        raise SimulationRefused(f"{stats.failed} message(s) were not acknowledged by the broker")
    if stats.interrupted:
        if run.options.week is None:  # Ctrl-C is how a live stream ends
            console.print("live stream stopped")
            return
        if run.options.background:  # `wangge up` stopping is how a background run ends
            console.print(f"simulator stopped: {stats.total:,} of {run.messages:,} produced")
            return
        raise SimulationRefused("interrupted: the week was produced only in part")
