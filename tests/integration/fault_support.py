"""Fault harness: a private broker and PostgreSQL, and wangge processes under a supervisor.

Everything here is private to one test, so faults never disturb the shared PostgreSQL on
5432 or the shared broker on 9092 that other tests use (the fixtures `private_broker` and
`private_cluster` in tests/integration/conftest.py hand them out). Every process is started in a
session of its own, so that a kill of its whole process group takes an orphaned child
(the compliance stage of `wangge consume`) with it.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from kafka.admin import KafkaAdminClient

from geodata.contract import Topics
from tests.integration.pipeline_support import free_port
from wangge.services import tansu_binary

RESTART_DELAY_S = 1.0
"""How long the supervisor waits before restarting an exited process (systemd's RestartSec)."""


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _wait_port(port: int, process: "subprocess.Popen[bytes]", what: str) -> None:
    deadline = time.monotonic() + 30
    while not _port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not listen on port {port}")
        time.sleep(0.05)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(group) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def kill_group(pgid: int) -> None:
    """SIGKILL every live process of a group we started (a stopped one too)."""
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


class PrivateBroker:
    """A Tansu broker of this test's own, started as `wangge services start` starts one."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"tansu-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._pgids: list[int] = []

    def start(self) -> None:
        """Start it (its data lives in memory only) and wait until it listens."""
        url = f"tcp://{self.bootstrap}"
        args = ["broker", "--listener-url", url, "--advertised-listener-url", url]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(tansu_binary()), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._pgids.append(self.process.pid)
        _wait_port(self.port, self.process, "the private Tansu broker")

    def pause(self) -> None:
        """SIGSTOP: the broker holds every connection open and answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after a pause."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, paused or not: every topic, record and committed group offset goes too."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def topic_partitions(self) -> dict[str, int]:
        """Every topic on it and its partition count (a request for all: makes none)."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            return {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
        finally:
            admin.close()

    def close(self) -> None:
        """Kill whatever of it still runs (a paused broker too)."""
        for pgid in self._pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGCONT)
            kill_group(pgid)
        if self.process is not None:
            self.process.wait(timeout=10)


class PrivateCluster:
    """A PostgreSQL cluster of this test's own (pg_createcluster), trusted on 127.0.0.1.

    `version` is a major version whose binaries are installed: the shared server's.
    """

    def __init__(self, version: str) -> None:
        self.version = version
        self.name = f"faultd{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.created = False

    def _ctl(self, action: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action],
            check=True,
            capture_output=True,
        )

    def create(self) -> None:
        """Create and start it; `--auth=trust` goes to initdb, so no password anywhere."""
        assert shutil.which("pg_createcluster"), "pg_createcluster (postgresql-common) missing"
        port = str(self.port)
        subprocess.run(
            ["pg_createcluster", self.version, self.name, "-p", port, "--", "--auth=trust"],
            check=True,
            capture_output=True,
        )
        self.created = True
        self.start()

    def url(self, database: str) -> str:
        """The libpq URL of one of its databases."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start it and wait until it takes connections."""
        self._ctl("start")
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, f"cluster {self.name} did not come up"
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop it (fast mode: open sessions are cut, as on a server restart)."""
        self._ctl("stop")

    def drop(self) -> None:
        """Stop it and delete its data directory."""
        if self.created:
            subprocess.run(
                ["pg_dropcluster", "--stop", self.version, self.name],
                check=False,
                capture_output=True,
            )
            self.created = False


def wangge_env(database_url: str, bootstrap: str, topics: Topics, group: str) -> dict[str, str]:
    """The environment a city would give its wangge processes, and nothing of ours.

    The group goes in WANGGE_CONSUMER_GROUP, not `--group`, so that the consumers and the
    API's /healthz agree on it (both namespace it). The phones replay 2020-W37, so the
    events' age limit keeps only its fixed floor.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANGGE_")}
    return {
        **env,
        "WANGGE_DATABASE_URL": database_url,
        "WANGGE_KAFKA_BOOTSTRAP": bootstrap,
        "WANGGE_TOPIC_NAMESPACE": topics.checkins.removesuffix("grid.checkins.v1"),
        "WANGGE_CONSUMER_GROUP": group,
        "WANGGE_EVENT_MAX_AGE_DAYS": "0",
    }


@dataclass
class Supervised:
    """One wangge process as systemd would run it: restarted whenever it exits."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: "subprocess.Popen[bytes] | None" = None
    pgids: list[int] = field(default_factory=list)
    unplanned_exits: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Start it in a session of its own (logs appended to one file)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        self.pgids.append(self.process.pid)

    def restart_if_exited(self) -> None:
        """Called by the supervisor: an exit we did not cause is counted and restarted."""
        with self.lock:
            if self.process is None or self.process.poll() is None:
                return
            self.unplanned_exits.append(int(self.process.returncode))
        time.sleep(RESTART_DELAY_S)
        with self.lock:
            if self.process.poll() is not None:
                self.start()

    def kill_and_restart(self) -> int:
        """kill -9 the process alone (not its children), then restart it; the old pgid."""
        with self.lock:
            assert self.process is not None
            old = self.process
            old.send_signal(signal.SIGKILL)
            old.wait(timeout=10)
            self.start()
            return old.pid

    def close(self) -> None:
        """Kill every process it ever started, orphans included."""
        with self.lock:
            for pgid in self.pgids:
                kill_group(pgid)
            if self.process is not None:
                self.process.wait(timeout=10)
            self.process = None

    def log(self) -> str:
        """What it printed, across restarts."""
        return self.log_path.read_text(errors="replace")


class Supervisor:
    """Restarts any of its processes that exits, like systemd's Restart=always."""

    def __init__(self) -> None:
        self.processes: list[Supervised] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def add(self, process: Supervised) -> Supervised:
        """Start a process and watch it from now on."""
        process.start()
        self.processes.append(process)
        if not self._thread.is_alive():
            self._thread.start()
        return process

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for process in list(self.processes):
                process.restart_if_exited()

    def close(self) -> None:
        """Stop watching and kill everything started."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for process in self.processes:
            process.close()


def consumer_process(
    database_url: str, bootstrap: str, topics: Topics, group: str, log_dir: Path
) -> Supervised:
    """`wangge consume` with every stage (the compliance stage in a child process)."""
    return Supervised(
        "consumer",
        [sys.executable, "-m", "wangge", "consume"],
        wangge_env(database_url, bootstrap, topics, group),
        log_dir / f"consumer-{uuid.uuid4().hex[:6]}.log",
    )


def api_process(
    database_url: str, bootstrap: str, topics: Topics, group: str, port: int, log_dir: Path
) -> Supervised:
    """`wangge serve` on `port`."""
    return Supervised(
        "api",
        [sys.executable, "-m", "wangge", "serve", "--port", str(port)],
        wangge_env(database_url, bootstrap, topics, group),
        log_dir / f"api-{port}.log",
    )


def wait_serving(base: str, timeout_s: float = 90) -> None:
    """Wait until the API answers /healthz at all: phones post from then on.

    Any status will do: readiness may still wait for the consumers, and a phone retries a
    503 anyway; the scenario itself waits for check-ins to be stored before the fault.
    """
    deadline = time.monotonic() + timeout_s
    last = "nothing yet"
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/healthz", timeout=5)
            return
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise AssertionError(f"the API at {base} never answered: {last}")
