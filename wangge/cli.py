"""The `wangge` command line: services, schema, dataset and the main job."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from geodata.accounts import Role
from wangge import services
from wangge.settings import (
    ApiSettings,
    DatabaseSettings,
    IntakeSettings,
    KafkaSettings,
    LocalServicesSettings,
    PatrolSettings,
)

app = typer.Typer(
    help="wangge: event-driven GIS platform for urban grid governance.",
    pretty_exceptions_show_locals=False,
)
services_app = typer.Typer(help="Start, stop and inspect PostGIS and the Kafka broker.")
db_app = typer.Typer(help="Database schema migrations.")
dataset_app = typer.Typer(help="The reference dataset: generate and import boundaries.")
users_app = typer.Typer(help="Accounts and their bearer tokens.")
app.add_typer(services_app, name="services")
app.add_typer(db_app, name="db")
app.add_typer(dataset_app, name="dataset")
app.add_typer(users_app, name="users")

console = Console()
err_console = Console(stderr=True)

ProgressCallback = Callable[[str, int, int], None]


def _fail(message: str) -> typer.Exit:
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


def _print_reports(reports: list[services.ServiceReport]) -> None:
    table = Table("service", "state", "details")
    for report in reports:
        table.add_row(report.name, report.state, "\n".join(report.details))
    console.print(table)


# --------------------------------------------------------------------------- services


def start_services() -> list[services.ServiceReport]:
    """Start or check PostGIS and the broker; exit with a clear message on failure."""
    try:
        return [
            services.ensure_postgis(DatabaseSettings(), log=console.print),
            services.ensure_broker(KafkaSettings(), LocalServicesSettings(), log=console.print),
        ]
    except services.ServiceError as exc:
        raise _fail(str(exc)) from exc


@services_app.command("start")
def services_start() -> None:
    """Make sure PostGIS and a Kafka broker run, starting local ones where none is configured."""
    _print_reports(start_services())


@services_app.command("status")
def services_status() -> None:
    """Show whether PostGIS and the broker answer."""
    reports = [
        services.postgis_status(DatabaseSettings()),
        services.broker_status(KafkaSettings(), LocalServicesSettings()),
    ]
    _print_reports(reports)
    if any(r.state != "running" for r in reports):
        raise typer.Exit(code=1)


@services_app.command("stop")
def services_stop() -> None:
    """Stop the local broker wangge started (the system PostgreSQL is left running)."""
    report = services.stop_broker(LocalServicesSettings(), log=console.print)
    postgres = services.ServiceReport(
        "postgis",
        "left running",
        ["the PostgreSQL cluster is the system's; wangge does not stop it"],
    )
    _print_reports([report, postgres])


# --------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the database to the current schema (Alembic)."""
    from geodata.db import migrate

    settings = DatabaseSettings()
    migrate.upgrade(settings.url, revision)
    console.print(f"database at revision [bold]{revision}[/]")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()] = "base") -> None:
    """Migrate the database down (to `base` by default: drops every wangge table)."""
    from geodata.db import migrate

    migrate.downgrade(DatabaseSettings().url, revision)
    console.print(f"database at revision [bold]{revision}[/]")


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision and the code's."""
    from geodata.db import migrate
    from geodata.db.engine import create_db_engine

    engine = create_db_engine(DatabaseSettings().url)
    current = migrate.current_revision(engine)
    console.print(f"database: {current or 'no schema'}; code: {migrate.head_revision()}")


# --------------------------------------------------------------------------- dataset


@dataset_app.command("generate")
def dataset_generate(
    out: Annotated[Path, typer.Option(help="GeoPackage to write")],
    seed: Annotated[int, typer.Option(help="random seed; same seed, same file")] = 2020,
) -> None:
    """Write the synthetic Baoji reference dataset (1,138 grids) as a GeoPackage."""
    from geodata.dataset.generate import generate_reference_dataset, write_geopackage

    with progress_bar() as progress:
        dataset = generate_reference_dataset(seed, progress=progress)
    write_geopackage(dataset, out)
    table = Table("layer", "features")
    for layer in ("districts", "streets", "communities", "grids", "workers", "pois"):
        table.add_row(layer, f"{len(getattr(dataset, layer)):,}")
    console.print(table)
    console.print(f"wrote {out}")


def _import(path: Path, *, dry_run: bool, repair: bool) -> None:
    from geodata.dataset.importer import import_boundaries
    from geodata.db import migrate
    from geodata.db.engine import create_db_engine
    from geodata.errors import ImportRefused, SchemaMissing

    engine = create_db_engine(DatabaseSettings().url)
    try:
        migrate.require_current_schema(engine)
        with progress_bar() as progress:
            report = import_boundaries(
                engine, path, dry_run=dry_run, repair=repair, progress=progress
            )
    except SchemaMissing as exc:
        raise _fail(str(exc)) from exc
    except ImportRefused as exc:
        table = Table("layer", "feature", "reason", "detail", title="refused: nothing was written")
        for problem in exc.problems:
            table.add_row(
                str(getattr(problem, "layer", "")),
                str(getattr(problem, "feature", "")),
                str(getattr(problem, "reason", "")),
                str(getattr(problem, "detail", "")),
            )
        err_console.print(table)
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    console.print(report.render() if hasattr(report, "render") else report)


@dataset_app.command("import")
def dataset_import(
    path: Annotated[
        Path,
        typer.Argument(
            exists=True, help="GeoJSON, Shapefile (.shp/.zip), GeoPackage or FlatGeobuf"
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and report only")] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="repair rings make_valid fixes within 0.1 % area")
    ] = False,
) -> None:
    """Validate and import boundaries, all or nothing."""
    _import(path, dry_run=dry_run, repair=repair)


# --------------------------------------------------------------------------- users


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="the account's unique name")],
    role: Annotated[Role, typer.Option(help="what the account may do")],
    area: Annotated[
        str | None,
        typer.Option(help="a supervisor's area: district (6 digits), street (9), community (12)"),
    ] = None,
    worker: Annotated[
        str | None, typer.Option(help="a worker account's worker id, e.g. W00042")
    ] = None,
) -> None:
    """Create an account and print its bearer token alone on the last line."""
    from geodata.errors import WanggeError
    from wangge.users_cli import add_user

    try:
        token = add_user(DatabaseSettings().url, name, role, area, worker)
    except WanggeError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"created the {role} account {name!r}; its token is shown only once:")
    # Plain print: rich might wrap or style the token, and scripts read this line as is.
    print(token)


@users_app.command("token")
def users_token(name: Annotated[str, typer.Argument(help="the account's name")]) -> None:
    """Issue another bearer token for an account and print it alone on the last line."""
    from geodata.errors import WanggeError
    from wangge.users_cli import issue_token

    try:
        token = issue_token(DatabaseSettings().url, name)
    except WanggeError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"a new token for {name!r} (its other tokens stay valid); shown only once:")
    print(token)


@users_app.command("revoke")
def users_revoke(name: Annotated[str, typer.Argument(help="the account's name")]) -> None:
    """Revoke every token of an account; a running API refuses them within 5 seconds."""
    from geodata.errors import WanggeError
    from wangge.users_cli import revoke_tokens

    try:
        count = revoke_tokens(DatabaseSettings().url, name)
    except WanggeError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"revoked {count} token(s) of {name!r}")


# --------------------------------------------------------------------------- main job


def _reference_dataset_path(seed: int) -> Path:
    return LocalServicesSettings().state_dir / f"baoji-reference-seed{seed}.gpkg"


def load_reference_dataset_if_empty(seed: int) -> None:
    """Import the reference dataset when the database has no grid yet."""
    from geodata.dataset.generate import generate_reference_dataset, write_geopackage
    from geodata.dataset.importer import database_is_empty
    from geodata.db.engine import create_db_engine

    engine = create_db_engine(DatabaseSettings().url)
    try:
        empty = database_is_empty(engine)
    finally:
        engine.dispose()
    if not empty:
        console.print("database already holds grids: reference dataset not loaded")
        return
    path = _reference_dataset_path(seed)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with progress_bar() as progress:
            write_geopackage(generate_reference_dataset(seed, progress=progress), path)
    console.print(f"loading the reference dataset from {path}")
    _import(path, dry_run=False, repair=False)


HostOption = Annotated[
    str | None, typer.Option(help="address to bind (default: WANGGE_API_HOST, 127.0.0.1)")
]
PortOption = Annotated[
    int | None, typer.Option(help="port to bind (default: WANGGE_API_PORT, 8000)")
]


def _bind(host: str | None, port: int | None) -> tuple[str, int]:
    """The address the API binds: the options, else WANGGE_API_HOST and WANGGE_API_PORT."""
    settings = ApiSettings()
    return host or settings.api_host, settings.api_port if port is None else port


def _serve(host: str | None, port: int | None) -> None:
    import uvicorn

    from grid_service.app import ApiConfig, create_app
    from grid_service.health import HealthConfig

    kafka = KafkaSettings()
    config = ApiConfig(
        DatabaseSettings().url,
        kafka.bootstrap,
        kafka.topics,
        topic_partitions=kafka.topic_partitions,
        consumer_group=kafka.group_id,
        health=HealthConfig(heartbeat_window_s=ApiSettings().heartbeat_window_s),
        event_limits=IntakeSettings().limits(),
        compliance=PatrolSettings().compliance_config(),
    )
    host, port = _bind(host, port)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")


def _consume(names: list[str], group: str | None, idle_exit_after_s: float | None) -> None:
    from event_consumers.app import run_consumers
    from event_consumers.runner import RunnerConfig
    from geodata.db import migrate
    from geodata.db.engine import create_db_engine, libpq_url
    from geodata.errors import SchemaMissing

    database_url = DatabaseSettings().url
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
    except SchemaMissing as exc:
        raise _fail(str(exc)) from exc
    kafka = KafkaSettings()
    try:
        services.ensure_topics(kafka.bootstrap, kafka.topic_partitions, kafka.topics)
    except Exception as exc:
        raise _fail(f"the broker at {kafka.bootstrap} does not answer: {exc}") from exc
    config = RunnerConfig(
        bootstrap=kafka.bootstrap,
        database_url=libpq_url(database_url),
        group_id=group or kafka.group_id,
        topic_partitions=kafka.topic_partitions,
        event_limits=IntakeSettings().limits(),
        compliance=PatrolSettings().compliance_config(),
    )
    run_consumers(config, engine, kafka.topics, names, idle_exit_after_s=idle_exit_after_s)


@app.command()
def consume(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="consumers to run: checkins, incidents, compliance (default all)"),
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Kafka consumer group (default: WANGGE_CONSUMER_GROUP)")
    ] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="exit after this many idle seconds (batch jobs)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve this process's Prometheus metrics on the port")
    ] = None,
) -> None:
    """Run the consumers; several processes with one --group share the partitions."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = names or ["checkins", "incidents", "compliance"]
    if metrics_port is None:
        _consume(names, group, idle_exit)
        return
    from event_consumers.metrics_endpoint import serve_metrics

    with serve_metrics(metrics_port):
        _consume(names, group, idle_exit)


def _raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "wangge", *args], env=env)


@app.command()
def up(
    host: HostOption = None,
    port: PortOption = None,
    seed: Annotated[
        int, typer.Option(help="seed of the reference dataset and of the simulated week")
    ] = 2020,
    simulate: Annotated[
        bool,
        typer.Option("--simulate", help="also run the simulator: check-ins flow while it serves"),
    ] = False,
    week: Annotated[
        str | None,
        typer.Option(
            help="with --simulate: ISO week to replay (default: last week);"
            " `live` streams this week as it happens"
        ),
    ] = None,
    speed: Annotated[
        str | None,
        typer.Option(help="with --simulate: N× real time or max (default 60; live: 1)"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="with --simulate: simulate N workers (a deterministic subset)"),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="with --simulate: at most this many events a second")
    ] = None,
) -> None:
    """Start services, migrate, load the reference dataset if empty, run consumers and API.

    With --simulate, the city's phones too: a simulated week produced to the broker as it
    goes, stopped with the rest by Ctrl-C or SIGTERM.
    """
    from geodata.db import migrate
    from geodata.errors import WanggeError
    from wangge.simulation.cli import replay_intake_env, up_simulator_args

    simulator_args: list[str] | None = None
    try:
        if simulate:
            simulator_args = up_simulator_args(week, speed, rate, seed, workers)
        elif week or speed or workers or rate:
            raise _fail("--week, --speed, --workers and --rate go with --simulate")
    except WanggeError as exc:
        raise _fail(str(exc)) from exc

    host, port = _bind(host, port)
    _print_reports(start_services())
    migrate.upgrade(DatabaseSettings().url)
    console.print("schema at the current revision")
    load_reference_dataset_if_empty(seed)

    # Ctrl-C and SIGTERM both stop what `up` started; SIGINT is set explicitly because a
    # shell that starts `up` in the background makes it ignore SIGINT otherwise.
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    # One metrics directory so the API's /metrics adds up every process's samples.
    metrics_dir = Path(tempfile.mkdtemp(prefix="wangge-metrics-"))
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    if simulator_args:
        env.update(replay_intake_env(simulator_args))
    children = [
        _child(["consume"], env),
        _child(["serve", "--host", host, "--port", str(port)], env),
    ]
    simulator = _child(simulator_args, env) if simulator_args else None
    base = f"http://{host}:{port}"
    console.print(
        f"[bold green]wangge is up:[/] the supervisors' map {base}/map "
        f"(a supervisor's or an admin's token from `wangge users add`), "
        f"health {base}/healthz, API docs {base}/docs  (Ctrl-C stops)"
    )
    if simulator_args:
        console.print(f"simulating: wangge {' '.join(simulator_args[:-1])}")
    try:
        _watch(children, simulator)
    except KeyboardInterrupt:
        console.print("stopping the simulator, the consumers and the API")
    finally:
        # The simulator first in the list: what it flushes on the way out still finds the
        # broker; every child is signalled before any is waited for.
        _stop([c for c in (simulator, *children) if c is not None])
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _watch(
    children: list[subprocess.Popen[bytes]], simulator: subprocess.Popen[bytes] | None
) -> None:
    """Return when a consumer or the API exits; a simulator that is done leaves them serving."""
    while all(child.poll() is None for child in children):
        if simulator is not None and simulator.poll() is not None:
            if simulator.returncode != 0:
                raise _fail(f"the simulator exited with {simulator.returncode}")
            console.print("the simulated week is produced; the consumers and the API go on")
            simulator = None
        time.sleep(0.5)
    failed = [c.args for c in children if c.poll() not in (None, 0)]
    if failed:
        raise _fail(f"a wangge process exited: {failed}")


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


@app.command()
def compliance(
    week: Annotated[str, typer.Option(help="ISO week, e.g. 2020-W37")],
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"],
            help="how the week stood at this time (default now); without an offset, Beijing time",
        ),
    ] = None,
    code: Annotated[
        str | None, typer.Option(help="district, street, community or grid code prefix")
    ] = None,
) -> None:
    """Print the patrol compliance of every worker in a week, as of a time."""
    from geodata.errors import WanggeError
    from wangge.compliance_cli import print_compliance

    try:
        config = PatrolSettings().compliance_config()
        print_compliance(DatabaseSettings().url, week, as_of, code, console, config)
    except WanggeError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def incidents(
    code: Annotated[
        str | None, typer.Option(help="district, street, community or grid code prefix")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="a status or several, comma-separated, e.g. reported")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="a category code, or a class such as environment")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="rows to print")] = 50,
) -> None:
    """Print the newest incidents and where they stand in their lifecycle."""
    from geodata.errors import WanggeError
    from wangge.incidents_cli import print_incidents

    try:
        print_incidents(
            DatabaseSettings().url,
            code=code,
            status=status,
            category=category,
            limit=limit,
            console=console,
        )
    except WanggeError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def bench(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="pipeline, compliance, api, import (default: all)"),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="short runs: about a minute in all, noisy figures")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(help="also write the combined table: results.json or results.md"),
    ] = None,
) -> None:
    """Run the benchmarks on the configured services; print one table of them all."""
    try:
        from wangge.benchmarks.cli import check_request, run_benchmarks
    except ModuleNotFoundError as exc:
        if exc.name != "wangge.benchmarks":
            raise
        # The wheel leaves the benchmarks out: a development tool, with dev dependencies.
        raise _fail("the benchmarks run from a checkout of wangge (pip install -e .)") from exc
    try:
        check_request(names or [], output)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    _print_reports(start_services())
    database_url = DatabaseSettings().url
    failed = run_benchmarks(
        names or [], quick=quick, console=console, database_url=database_url, output=output
    )
    if failed:
        raise typer.Exit(code=1)


@app.command()
def serve(
    host: HostOption = None,
    port: PortOption = None,
) -> None:
    """Run the HTTP API and the supervisors' map (/map)."""
    _serve(host, port)


# --------------------------------------------------------------------------- simulation


@app.command()
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
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
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
        raise _fail(str(exc)) from exc
    except KeyboardInterrupt:
        if not background:
            raise
        console.print("simulator stopped")  # while planning, or a second signal while flushing


@app.command()
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
        raise _fail(str(exc)) from exc
    if not comparison.agrees:
        raise typer.Exit(code=1)
