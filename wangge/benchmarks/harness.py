"""What every benchmark shares: fresh databases, consumer processes, the machine, the table.

Each benchmark runs on the configured services in databases and topic namespaces of its
own, made here and dropped afterwards, so that nothing is shared with other runs.
"""

import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg
from kafka.record.util import crc32c_c
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from geodata.contract import Topics
from geodata.db import migrate
from geodata.db.engine import create_db_engine, libpq_url
from wangge import services
from wangge.benchmarks.rows import BenchmarkRow

Progress = Callable[[str, int, int], None]
"""`progress(stage, done, total)`, as the CLI's progress bar takes it."""

PARTITIONS = 6
REFERENCE_SEED = 2020


def load_reference_dataset(url: str, seed: int = REFERENCE_SEED) -> None:
    """Give an empty database PostGIS, the schema and the reference dataset of `seed`."""
    from geodata.dataset.generate import generate_reference_dataset, write_geopackage
    from geodata.dataset.importer import import_boundaries

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    migrate.upgrade(url)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reference.gpkg"
        write_geopackage(generate_reference_dataset(seed), path)
        engine = create_db_engine(url)
        try:
            import_boundaries(engine, path)
        finally:
            engine.dispose()


def database_of(url: str) -> str:
    """The database name of a URL."""
    return str(make_url(libpq_url(url)).database)


class DatabaseServer:
    """The PostgreSQL server of a URL: makes uniquely named databases and drops them."""

    def __init__(self, database_url: str) -> None:
        self._url = make_url(libpq_url(database_url))
        self._created: list[str] = []

    def url_of(self, name: str) -> str:
        """A libpq URL of database `name` on this server."""
        return self._url.set(database=name).render_as_string(hide_password=False)

    def create(self, template: str | None = None) -> str:
        """A new, uniquely named database (a copy of `template` if given); its name."""
        name = f"wangge_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url_of("postgres"), autocommit=True) as conn:
            clause = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{clause}')
        self._created.append(name)
        return name

    def build_reference(self) -> str:
        """A new database with the schema and the reference dataset (seed 2020)."""
        name = self.create()
        load_reference_dataset(self.url_of(name))
        return name

    def copy(self, template: str) -> str:
        """The URL of a fresh copy of a database."""
        return self.url_of(self.create(template))

    def drop_created(self) -> None:
        """Drop every database this run made."""
        with psycopg.connect(self.url_of("postgres"), autocommit=True) as conn:
            for name in reversed(self._created):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()


@contextlib.contextmanager
def reference_database(server_url: str, template_url: str | None) -> Iterator[str]:
    """A new database with the reference dataset (a copy of `template_url`'s if given).

    It is made on the server of `server_url` and dropped at the end; a template is copied,
    so nothing may be connected to it.
    """
    server = DatabaseServer(server_url)
    try:
        if template_url:
            url = server.copy(database_of(template_url))
        else:
            url = server.url_of(server.build_reference())
        yield url
    finally:
        server.drop_created()


@contextlib.contextmanager
def consumer_processes(
    url: str,
    bootstrap: str,
    topics: Topics,
    group: str,
    count: int,
    logs: Path,
    *,
    handlers: Sequence[str] = (),
    stop_timeout_s: float = 30,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`wangge consume [handlers]` processes of one group, as production runs them.

    Each logs to `logs/GROUP-I.log`; at the end they get SIGTERM (`stop_gracefully`).
    """
    env = {
        **os.environ,
        "WANGGE_DATABASE_URL": url,
        "WANGGE_KAFKA_BOOTSTRAP": bootstrap,
        "WANGGE_TOPIC_NAMESPACE": topics.checkins.removesuffix(Topics().checkins),
        "WANGGE_TOPIC_PARTITIONS": str(PARTITIONS),
        # The benchmarks replay 2020-W37: only the fixed floor of event times applies.
        "WANGGE_EVENT_MAX_AGE_DAYS": "0",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # never mix samples into a running platform's
    args = [sys.executable, "-m", "wangge", "consume", *handlers, "--group", group]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            with (logs / f"{group}-{i}.log").open("ab") as log:
                processes.append(subprocess.Popen(args, env=env, stdout=log, stderr=log))
        yield processes
    finally:
        stop_gracefully(processes, timeout_s=stop_timeout_s)


def stop_gracefully(processes: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """SIGTERM every process (they finish the batch and commit), then kill stragglers."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scalar(conn: psycopg.Connection, sql: str, *params: object) -> int:
    """The one integer a query answers; 0 for no row or NULL."""
    row = conn.execute(sql, params, prepare=True).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def committed(conn: psycopg.Connection, group: str, topic: str) -> int:
    """Records of a topic whose work is committed: its stored next offsets (topic from 0)."""
    return scalar(
        conn,
        "SELECT sum(next_offset) FROM consumer_offsets WHERE consumer_group = %s AND topic = %s",
        group,
        topic,
    )


def report_console() -> Console:
    """The console a benchmark prints its table on."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a log file should keep the table's rows whole
    return console


def describe_machine(database_url: str) -> dict[str, str]:
    """CPU, memory, and the versions of PostgreSQL, PostGIS and the local broker."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [
        line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line
    ]
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else "x 0"
    with psycopg.connect(libpq_url(database_url)) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()
        postgis = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'"
        ).fetchone()
    try:
        tansu = [str(services.tansu_binary()), "--version"]
        broker = subprocess.run(tansu, capture_output=True, text=True, check=False).stdout
    except services.ServiceError:
        broker = "?"
    return {
        "cpus": f"{os.cpu_count()} × {models[0] if models else platform.processor()}",
        "memory": f"{int(meminfo.split()[1]) / 1024**2:.1f} GiB",
        "python": platform.python_version(),
        "postgresql": str(postgres[0]) if postgres else "?",
        "postgis": str(postgis[0]) if postgis else "?",
        "broker": broker.strip() or "?",
        "kafka-python crc32c": "C extension" if crc32c_c is not None else "pure Python",
        # The machine may be shared: what else ran shows here, and moves every figure.
        "load average (1, 5, 15 min)": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }  # fmt: skip


def render_table(rows: list[BenchmarkRow]) -> Table:
    """The rows as a rich table."""
    table = Table(title="wangge pipeline benchmark")
    for column in ("measure", "ours", "ceiling / peer", "ratio", "target", "met", "detail"):
        table.add_column(column, justify="right" if column in ("ours", "ratio") else "left")
    for row in rows:
        peer = f"{row.peer:,.0f} {row.unit} ({row.peer_name})" if row.peer is not None else "—"
        table.add_row(
            row.name, f"{row.ours:,.0f} {row.unit}", peer,
            f"{row.ratio:.2f}" if row.ratio is not None else "—", row.target,
            {True: "yes", False: "NO", None: "—"}[row.met], row.detail,
        )  # fmt: skip
    return table
