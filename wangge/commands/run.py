"""`wangge serve`, `wangge consume` and `wangge up`, which runs them both as children.

`wangge up` prints one line to start from: the map's address and the local admin's
sign-in (made on a fresh database, its password kept in the state directory, 0600, while
it is still the admin's). So that the line stays in view, the libraries' INFO logs
(kafka's connections, alembic's context) and the API's access log are left out unless
`--verbose`.
"""

import gc
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

from event_consumers.logs import LOG_FORMAT
from wangge import services
from wangge.commands.common import console, fail, print_reports, raise_keyboard_interrupt
from wangge.commands.dataset import load_reference_dataset_if_empty
from wangge.commands.services import start_services
from wangge.settings import ApiSettings, DatabaseSettings, KafkaSettings, LocalServicesSettings

if TYPE_CHECKING:
    from wangge.users_cli import LocalAdmin

HostOption = Annotated[
    str | None, typer.Option(help="address to bind (default: WANGGE_API_HOST, 127.0.0.1)")
]
PortOption = Annotated[
    int | None, typer.Option(help="port to bind (default: WANGGE_API_PORT, 8000)")
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", help="also the libraries' INFO logs (kafka, alembic)")
]

LIBRARY_LOGGERS: Final = ("kafka", "alembic")
"""Libraries whose INFO lines (every connection, every metadata refresh) bury ours."""
READY_WAIT_S: Final = 90.0
"""How long `up` waits for /healthz before printing its line all the same."""
GATE_WAIT_S: Final = 15.0
"""How long `up`, stopping, waits for the posts under way to be acknowledged by the
broker or refused (a post gives up after the gateway's 5 s acknowledgement timeout)."""
DRAIN_WAIT_S: Final = 180.0
"""How long `up`, stopping, lets a consumer stage drain before it stops it as it stands."""


def quiet_library_logs() -> None:
    """Keep only the libraries' warnings and errors; wangge's own INFO lines stay."""
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Its warning that one of its own I/O tasks ran over 0.1 s comes on any busy machine,
    # and says nothing the user can act on; its errors still show.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    # Under load a metadata request is cancelled and simply sent again: "Metadata refresh:
    # failed Cancelled" a few times a minute, after the line `up` leaves in view.
    logging.getLogger("kafka.cluster").setLevel(logging.ERROR)


def bind_address(host: str | None, port: int | None) -> tuple[str, int]:
    """The address the API binds: the options, else WANGGE_API_HOST and WANGGE_API_PORT."""
    settings = ApiSettings()
    return host or settings.api_host, settings.api_port if port is None else port


def serve(
    host: HostOption = None,
    port: PortOption = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="a line per request")
    ] = True,
) -> None:
    """Run the HTTP API and the supervisors' map (/map).

    SIGUSR1 closes the gateway (event posts get 503 `stopping` with Retry-After) while
    the rest serves on; SIGTERM then stops the process.
    """
    import uvicorn

    from grid_service.app import create_app
    from grid_service.gateway import close_gateway
    from wangge.adapter_configs import api_config

    config = api_config()
    host, port = bind_address(host, port)
    app = create_app(config)
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: close_gateway(app))
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)


def _consume(names: list[str], group: str | None, idle_exit_after_s: float | None) -> None:
    from event_consumers.app import run_consumers
    from event_consumers.collector import tune_for_a_long_lived_heap
    from geodata.db import migrate
    from geodata.db.engine import create_db_engine
    from geodata.errors import SchemaMissing
    from wangge.adapter_configs import runner_config

    engine = create_db_engine(DatabaseSettings().url)
    try:
        migrate.require_current_schema(engine)
    except SchemaMissing as exc:
        raise fail(str(exc)) from exc
    kafka = KafkaSettings()
    try:
        services.ensure_topics(kafka.bootstrap, kafka.topic_partitions, kafka.topics)
    except Exception as exc:
        raise fail(f"the broker at {kafka.bootstrap} does not answer: {exc}") from exc
    config = runner_config(group)
    tune_for_a_long_lived_heap()
    run_consumers(config, engine, kafka.topics, names, idle_exit_after_s=idle_exit_after_s)
    # Everything is committed: the exit's last collection would walk the grid snapshot and
    # the coverage lattices for seconds (8 s on a loaded 2-core host) and free nothing
    # that matters, while `wangge up` waits for this stage to stop.
    gc.freeze()


def consume(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="consumers to run: checkins, incidents, lockers, compliance (default all)"
        ),
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
    verbose: VerboseOption = False,
) -> None:
    """Run the consumers; several processes with one --group share the partitions."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if not verbose:
        quiet_library_logs()
    names = names or ["checkins", "incidents", "compliance"]
    if metrics_port is None:
        _consume(names, group, idle_exit)
        return
    from event_consumers.metrics_endpoint import serve_metrics

    with serve_metrics(metrics_port):
        _consume(names, group, idle_exit)


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A process group of its own: a terminal's Ctrl-C reaches `up` alone, which then
    # stops its children in order (`_stop_in_order`) rather than all at once.
    return subprocess.Popen([sys.executable, "-m", "wangge", *args], env=env, process_group=0)


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
    verbose: VerboseOption = False,
) -> None:
    """Start services, migrate, load the reference dataset if empty, run consumers and API.

    With --simulate, the city's phones too: a simulated week produced to the broker as it
    goes, stopped with the rest by Ctrl-C or SIGTERM.

    Ctrl-C or SIGTERM stops without losing an accepted event: the simulator, then the
    gateway (posts get 503 with Retry-After), the intake stage drained into PostGIS, the
    compliance stage drained, the API, and last the broker if `up` started it (its
    topics live in memory). A second Ctrl-C stops everything at once.
    """
    from geodata.db import migrate
    from geodata.errors import WanggeError
    from wangge.simulation.cli import map_path, replay_intake_env, up_simulator_args

    simulator_args: list[str] | None = None
    try:
        if simulate:
            simulator_args = up_simulator_args(week, speed, rate, seed, workers)
        elif week or speed or workers or rate:
            raise fail("--week, --speed, --workers and --rate go with --simulate")
    except WanggeError as exc:
        raise fail(str(exc)) from exc

    host, port = bind_address(host, port)
    reports = start_services()
    print_reports(reports)
    broker_ours = any(r.name == "kafka" and r.state == "started" for r in reports)
    migrate.upgrade(DatabaseSettings().url)
    console.print("schema at the current revision")
    load_reference_dataset_if_empty(seed)
    admin = _local_admin()

    # Ctrl-C and SIGTERM both stop what `up` started; SIGINT is set explicitly because a
    # shell that starts `up` in the background makes it ignore SIGINT otherwise.
    signal.signal(signal.SIGINT, raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    # The children no longer share the terminal's process group: a hang-up stops them too.
    signal.signal(signal.SIGHUP, raise_keyboard_interrupt)
    # One metrics directory so the API's /metrics adds up every process's samples.
    metrics_dir = Path(tempfile.mkdtemp(prefix="wangge-metrics-"))
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    if simulator_args:
        env.update(replay_intake_env(simulator_args))
    from event_consumers.app import COMPLIANCE_STAGE, INTAKE_STAGE

    # Each stage in a `wangge consume` of its own, rather than one that spawns the
    # compliance stage: a spawned child sets up its own logging, libraries' INFO included.
    logs = ["--verbose"] if verbose else []
    serve_logs = [] if verbose else ["--no-access-log"]
    intake = _child(["consume", *INTAKE_STAGE, *logs], env)
    compliance = _child(["consume", *COMPLIANCE_STAGE, *logs], env)
    api = _child(["serve", "--host", host, "--port", str(port), *serve_logs], env)
    children = [intake, compliance, api]
    simulator = _child(simulator_args, env) if simulator_args else None
    base = f"http://{_reachable(host)}:{port}"
    try:
        ready = _wait_ready(base, children)
        console.print(
            f"health {base}/healthz{'' if ready else ' (not ready yet)'}, API docs {base}/docs",
            style="dim",
            soft_wrap=True,
        )
        if simulator_args:
            console.print(f"simulating: wangge {' '.join(simulator_args[:-1])}", soft_wrap=True)
        # Last, so it is the line in view: where to go and how to get in.
        console.print(_up_line(base, admin, map_path(simulator_args or [])), soft_wrap=True)
        _watch(children, simulator)
    except KeyboardInterrupt:
        console.print("stopping: no event accepted is lost (Ctrl-C again stops at once)")
    finally:
        try:
            _stop_in_order(base, simulator, intake, compliance, api, broker_ours=broker_ours)
        except KeyboardInterrupt:
            console.print("[yellow]stopping at once:[/] what the consumers had not stored stays")
            _stop([c for c in (simulator, *children) if c is not None])
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _local_admin() -> "LocalAdmin | None":
    """The local admin `up` offers (made on a fresh database); None if it cannot say."""
    from geodata.errors import WanggeError
    from wangge.users_cli import ensure_local_admin

    try:
        return ensure_local_admin(DatabaseSettings().url, LocalServicesSettings().state_dir)
    except (WanggeError, OSError) as exc:
        console.print(f"[yellow]no local admin offered:[/] {exc}")
        return None


def _up_line(base: str, admin: "LocalAdmin | None", page: str = "/map") -> str:
    """The one line `up` leaves in view: the map (on a replayed week, that week), and who
    may sign in."""
    start = f"[bold green]wangge is up:[/] {base}{page}"
    if admin is None:
        return f"{start}  sign in with your account  (Ctrl-C stops)"
    if admin.password is None:
        return f"{start}  sign in as {admin.name} with the password you chose  (Ctrl-C stops)"
    return (
        f"{start}  sign in as [bold]{admin.name}[/] password [bold]{admin.password}[/]"
        f"  (kept in {admin.password_file} until you change it; Ctrl-C stops)"
    )


def _reachable(host: str) -> str:
    """The address a browser on this machine uses for a bind address."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _wait_ready(base: str, children: list[subprocess.Popen[bytes]]) -> bool:
    """Wait until /healthz says ready (the children's start-up logs are then behind us);
    False after READY_WAIT_S, or when a child exits (`_watch` reports that)."""
    deadline = time.monotonic() + READY_WAIT_S
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return False
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def _watch(
    children: list[subprocess.Popen[bytes]], simulator: subprocess.Popen[bytes] | None
) -> None:
    """Return when a consumer or the API exits; a simulator that is done leaves them serving."""
    while all(child.poll() is None for child in children):
        if simulator is not None and simulator.poll() is not None:
            if simulator.returncode != 0:
                raise fail(f"the simulator exited with {simulator.returncode}")
            console.print("the simulated week is produced; the consumers and the API go on")
            simulator = None
        time.sleep(0.5)
    failed = [c.args for c in children if c.poll() not in (None, 0)]
    if failed:
        raise fail(f"a wangge process exited: {failed}")


def _stop_in_order(
    base: str,
    simulator: subprocess.Popen[bytes] | None,
    intake: subprocess.Popen[bytes],
    compliance: subprocess.Popen[bytes],
    api: subprocess.Popen[bytes],
    *,
    broker_ours: bool,
) -> None:
    """Stop so that every event the gateway accepted (202) is stored, and the broker last.

    The simulator first (what it flushes still finds the broker); then the gateway
    closes and its posts under way end; then each stage drains (SIGUSR1: it reads to the
    ends its topics have then, commits, exits), the intake stage before the compliance
    stage it feeds; then the API; the broker last, and only when `up` started it and
    every step finished: otherwise it keeps what was not stored.
    """
    if simulator is not None:
        _stop([simulator])
    complete = _close_gateway(api, base)
    for name, stage in (("intake", intake), ("compliance", compliance)):
        complete = _drain(name, stage) and complete
    _stop([api])
    console.print("API stopped")
    if not broker_ours:
        return
    if not complete:
        console.print(
            "[yellow]the broker is left running:[/] it may hold accepted events not yet"
            " stored; `wangge up` again stores them, `wangge services stop` drops them"
        )
        return
    services.stop_broker(LocalServicesSettings(), log=console.print)


def _health(base: str) -> dict[str, object] | None:
    """/healthz's body, ready or not; None when the API does not answer."""
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
            body = answer.read()
    except urllib.error.HTTPError as refused:
        body = refused.read()
    except (urllib.error.URLError, OSError):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _close_gateway(api: subprocess.Popen[bytes], base: str) -> bool:
    """Close the API's gateway (SIGUSR1) and wait until no post is under way; False if
    that could not be seen (a post may still be acknowledged after the drains)."""
    if api.poll() is not None:
        return True  # nothing posts through an API that is gone
    api.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + GATE_WAIT_S
    while time.monotonic() < deadline:
        producer = (_health(base) or {}).get("producer")
        closed = isinstance(producer, dict) and producer.get("state") == "closed"
        if closed and isinstance(producer, dict) and producer.get("in_flight") == 0:
            console.print("gateway closed: event posts get 503 stopping with Retry-After")
            return True
        time.sleep(0.1)
    console.print("[yellow]the gateway did not say it was closed[/]")
    return False


def _drain(name: str, stage: subprocess.Popen[bytes]) -> bool:
    """Let a consumer stage store everything on its topics now, then exit (SIGUSR1);
    stopped as it stands after DRAIN_WAIT_S. True if it drained."""
    if stage.poll() is not None:
        console.print(f"[yellow]the {name} stage had exited ({stage.returncode})[/]")
        return False
    started = time.monotonic()
    stage.send_signal(signal.SIGUSR1)
    try:
        code = stage.wait(timeout=DRAIN_WAIT_S)
    except subprocess.TimeoutExpired:
        console.print(f"[yellow]the {name} stage did not drain in {DRAIN_WAIT_S:.0f} s[/]")
        _stop([stage])
        return False
    if code != 0:
        console.print(f"[yellow]the {name} stage exited with {code} while draining[/]")
        return False
    console.print(f"{name} stage drained in {time.monotonic() - started:.1f} s")
    return True


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
