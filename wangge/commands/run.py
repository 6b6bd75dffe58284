"""`wangge serve`, `wangge consume` and `wangge up`, which runs them both as children."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from wangge import services
from wangge.commands.common import console, fail, print_reports, raise_keyboard_interrupt
from wangge.commands.dataset import load_reference_dataset_if_empty
from wangge.commands.services import start_services
from wangge.settings import ApiSettings, DatabaseSettings, KafkaSettings

HostOption = Annotated[
    str | None, typer.Option(help="address to bind (default: WANGGE_API_HOST, 127.0.0.1)")
]
PortOption = Annotated[
    int | None, typer.Option(help="port to bind (default: WANGGE_API_PORT, 8000)")
]


def bind_address(host: str | None, port: int | None) -> tuple[str, int]:
    """The address the API binds: the options, else WANGGE_API_HOST and WANGGE_API_PORT."""
    settings = ApiSettings()
    return host or settings.api_host, settings.api_port if port is None else port


def serve(
    host: HostOption = None,
    port: PortOption = None,
) -> None:
    """Run the HTTP API and the supervisors' map (/map)."""
    import uvicorn

    from grid_service.app import create_app
    from wangge.adapter_configs import api_config

    config = api_config()
    host, port = bind_address(host, port)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")


def _consume(names: list[str], group: str | None, idle_exit_after_s: float | None) -> None:
    from event_consumers.app import run_consumers
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
    run_consumers(config, engine, kafka.topics, names, idle_exit_after_s=idle_exit_after_s)


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


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "wangge", *args], env=env)


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
            raise fail("--week, --speed, --workers and --rate go with --simulate")
    except WanggeError as exc:
        raise fail(str(exc)) from exc

    host, port = bind_address(host, port)
    print_reports(start_services())
    migrate.upgrade(DatabaseSettings().url)
    console.print("schema at the current revision")
    load_reference_dataset_if_empty(seed)

    # Ctrl-C and SIGTERM both stop what `up` started; SIGINT is set explicitly because a
    # shell that starts `up` in the background makes it ignore SIGINT otherwise.
    signal.signal(signal.SIGINT, raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
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
                raise fail(f"the simulator exited with {simulator.returncode}")
            console.print("the simulated week is produced; the consumers and the API go on")
            simulator = None
        time.sleep(0.5)
    failed = [c.args for c in children if c.poll() not in (None, 0)]
    if failed:
        raise fail(f"a wangge process exited: {failed}")


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
