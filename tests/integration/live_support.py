"""The real app on uvicorn, in a thread or a child process, and a server-sent events client.

A child process for the map's stream: it must end when the server is told to stop
(SIGTERM), which a thread in the test process cannot show. A thread where the test needs
the app's own config and real connections (a reset would show), not a process.
"""

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from kafka import KafkaProducer
from sqlalchemy import Row, text

from geodata.contract import Topics
from geodata.db.engine import create_db_engine
from grid_service.app import ApiConfig, create_app
from grid_service.stream import LiveStream

STOP_GRACE_S = 5
"""The most uvicorn waits for open responses when a `serving` block ends."""

_SERVER = """
import logging, socket, sys, uvicorn
from geodata.contract import Topics
from grid_service.app import ApiConfig, create_app
logging.basicConfig(level=logging.INFO)
app = create_app(ApiConfig(sys.argv[1], sys.argv[2], Topics.under(sys.argv[3])))
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)).run(
    sockets=[sock]
)
"""


@contextlib.contextmanager
def serving(config: ApiConfig) -> Iterator[str]:
    """The real app on uvicorn (in a thread), its base URL while the block runs.

    On the way out the app's live streams are ended first, as its lifespan would end them:
    uvicorn waits for open responses before the lifespan runs, and in a thread it has no
    signal handler through which sse-starlette would learn that the server stops, so a
    stream still open (a page, an SseClient) held every stop for the whole join timeout.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=STOP_GRACE_S)
    )
    loops: list[asyncio.AbstractEventLoop] = []

    def run() -> None:  # what server.run does, keeping the loop for the way out
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            loops.append(runner.get_loop())
            runner.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        live = getattr(app.state, "live", None)
        if isinstance(live, LiveStream) and loops and not loops[0].is_closed():
            loops[0].call_soon_threadsafe(live.hub.close)
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@dataclass
class ApiServer:
    """A running API process and its base URL."""

    process: "subprocess.Popen[str]"
    base: str

    def stop(self, timeout_s: float = 15) -> int:
        """SIGTERM, then the exit code; killed (and -9) if it does not exit in time."""
        self.process.terminate()
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -9


@contextlib.contextmanager
def api_server(database_url: str, bootstrap: str, namespace: str) -> Iterator[ApiServer]:
    """The app on a free port over `database_url`, reading topics under `namespace`."""
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVER, database_url, bootstrap, namespace],
        stdout=subprocess.PIPE,
        text=True,
    )
    server = ApiServer(child, "")
    try:
        assert child.stdout is not None
        server.base = f"http://127.0.0.1:{int(child.stdout.readline())}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{server.base}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert child.poll() is None, "the API process exited"
            assert time.monotonic() < deadline, "the API did not answer within 30 s"
            time.sleep(0.1)
        yield server
    finally:
        if child.poll() is None:
            server.stop()


@dataclass
class SseClient:
    """Reads one stream in a thread; every event lands in `events` as (type, data)."""

    url: str
    token: str
    params: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> "SseClient":
        """Connect in a background thread."""
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        timeout = httpx.Timeout(10, read=120)
        try:
            with httpx.stream(
                "GET", self.url, headers=headers, params=self.params, timeout=timeout
            ) as response:
                kind, data = "message", list[str]()
                for line in response.iter_lines():
                    if line == "":
                        if data:
                            with self._arrived:
                                self.events.append((kind, json.loads("\n".join(data))))
                                self._arrived.notify_all()
                        kind, data = "message", list[str]()
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def wait_for(self, kind: str, timeout_s: float = 20, **fields: Any) -> dict[str, Any]:
        """The first event of `kind` whose data has `fields`, received or arriving in time."""

        def found() -> dict[str, Any] | None:
            for got_kind, data in self.events:
                if got_kind == kind and all(data.get(k) == v for k, v in fields.items()):
                    return data
            return None

        with self._arrived:
            self._arrived.wait_for(lambda: found() is not None, timeout_s)
            data = found()
        assert data is not None, f"no {kind} event with {fields} within {timeout_s} s"
        return data

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        """Every event received so far."""
        with self._arrived:
            return list(self.events)


def produce(bootstrap: str, records: list[tuple[str, str, bytes]]) -> None:
    """Produce (topic, key, value) records and wait for the broker's acknowledgement."""
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all")
    try:
        for topic, key, value in records:
            producer.send(topic, key=key.encode(), value=value)
        producer.flush(timeout=20)
    finally:
        producer.close()


def query(database_url: str, sql: str) -> list[Row[Any]]:
    """The rows of one SELECT on `database_url`."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql)))
    finally:
        engine.dispose()


def grids_in_two_districts(database_url: str) -> tuple[str, str]:
    """A grid code in each of two districts of the reference city."""
    first, second = query(
        database_url,
        "SELECT min(code) FROM grids WHERE valid_to IS NULL"
        " GROUP BY left(code, 6) ORDER BY 1 LIMIT 2",
    )
    return first[0], second[0]


def namespaced(topics: Topics) -> str:
    """The namespace prefix of `topics` (what Topics.under was given)."""
    return topics.assignments.removesuffix("grid.assignments.v1")
