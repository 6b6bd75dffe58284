"""`wangge up` stopped by SIGTERM in the middle of 20,000 check-ins loses none it accepted.

`up` runs its own in-memory broker here (no WANGGE_KAFKA_BOOTSTRAP, a free port), so a
stop that stopped the broker before the consumers had stored everything would lose the
rest for good: what is in PostGIS right after `up` exits is all there will ever be.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from geodata.contract import Topics
from grid_service.app import ApiConfig, create_app
from grid_service.gateway import close_gateway
from tests.integration.fault_checks import folded_ids
from tests.integration.fault_phones import stored_ids
from tests.integration.fault_support import kill_group
from tests.integration.pipeline_support import (
    checkin_event,
    free_port,
    keep_assigned_only,
    placements,
)
from wangge import services
from wangge.settings import LocalServicesSettings
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

CHECKINS = 20_000
BATCH = 500
WORKERS = 16
STOP_AFTER_BATCHES = CHECKINS // BATCH // 2


@dataclass
class Poster:
    """Phones' batches posted one after another; a refused batch is posted again later."""

    base: str
    batches: list[tuple[str, list[dict[str, object]]]]
    accepted: list[str] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    posted: int = 0

    def post_until_refused(self, stop_after: int | None = None) -> None:
        """Post the batches left until one is refused (or `stop_after` are accepted)."""
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while self.posted < len(self.batches):
                if stop_after is not None and self.posted >= stop_after:
                    return
                token, batch = self.batches[self.posted]
                try:
                    answer = client.post(
                        "/api/v1/checkins",
                        json={"checkins": batch},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                except httpx.TransportError as exc:
                    self.answers[type(exc).__name__] += 1
                    return
                code = answer.json().get("code", "") if answer.status_code != 202 else ""
                self.answers[f"{answer.status_code} {code}".strip()] += 1
                if answer.status_code == 202:
                    self.accepted.extend(str(e["event_id"]) for e in batch)
                    self.posted += 1
                    continue
                if answer.status_code != 503 or not answer.headers.get("Retry-After"):
                    self.unexpected.append(f"{answer.status_code} {answer.text[:200]}")
                return


def test_a_closed_gateway_answers_posts_503_stopping_and_healthz_says_closed(
    reference_database_url: str, kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> None:
    spot = placements(reference_database_url, per_grid=1, seed=5)[0]
    token = add_user(reference_database_url, "phone", "worker", None, spot.worker_id)
    app = create_app(ApiConfig(reference_database_url, kafka_bootstrap, topic_factory()))
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        event = checkin_event(spot.worker_id, spot.lon, spot.lat, 0)
        assert client.post("/api/v1/checkins", json=event).status_code == 202
        close_gateway(app)
        refused = client.post("/api/v1/checkins", json={"checkins": [event]})
        producer = client.get("/healthz").json()["producer"]
    assert refused.status_code == 503
    assert refused.json()["code"] == "stopping"
    assert int(refused.headers["Retry-After"]) >= 1
    assert producer == {
        "ok": False,
        "state": "closed",
        "in_flight": 0,
        "reason": "the service is stopping",
    }


def _up(env: dict[str, str], port: int, log: Path) -> "subprocess.Popen[bytes]":
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "wangge", "up", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (its children keep process groups of their own)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def _wait_ready(process: "subprocess.Popen[bytes]", base: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"wangge up never became ready:\n{log.read_text()}")


def _stop(process: "subprocess.Popen[bytes]", log: Path) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"wangge up did not stop:\n{log.read_text()}") from None
    return log.read_text()


def _counted_once(url: str, event_ids: list[str]) -> tuple[int, int]:
    """(rows of these ids in checkins, in the compliance stage's copy)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM checkins WHERE event_id = ANY(%s::uuid[])),"
            " (SELECT count(*) FROM patrol_checkins WHERE event_id = ANY(%s::uuid[]))",
            (event_ids, event_ids),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.fixture
def up_env(reference_database_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """`up`'s environment: the reference city, a broker of its own on a free port; that
    broker is stopped at the end whatever happens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANGGE_")}
    state = tmp_path / "state"
    env |= {
        "WANGGE_DATABASE_URL": reference_database_url,
        "WANGGE_STATE_DIR": str(state),
        "WANGGE_LOCAL_BROKER_PORT": str(free_port()),
        "WANGGE_EVENT_MAX_AGE_DAYS": "0",  # the phones replay 2020-W37
    }
    yield env
    services.stop_broker(LocalServicesSettings(state_dir=state), log=lambda _msg: None)


def test_sigterm_mid_stream_stores_every_accepted_checkin_exactly_once(
    up_env: dict[str, str], tmp_path: Path
) -> None:
    url = up_env["WANGGE_DATABASE_URL"]
    spots = placements(url, per_grid=1, seed=5)[:: 1138 // WORKERS][:WORKERS]
    keep_assigned_only(url, [s.worker_id for s in spots])
    tokens = [add_user(url, f"phone-{s.worker_id}", "worker", None, s.worker_id) for s in spots]
    batches = []
    for number in range(CHECKINS // BATCH):
        spot, token = spots[number % WORKERS], tokens[number % WORKERS]
        first = number // WORKERS * BATCH
        batch = [
            checkin_event(spot.worker_id, spot.lon, spot.lat, (first + i) * 0.25)
            for i in range(BATCH)
        ]
        batches.append((token, batch))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    poster = Poster(base, batches)
    log = tmp_path / "up.log"
    up = _up(up_env, port, log)
    children: list[int] = []
    try:
        _wait_ready(up, base, log)
        children = _descendants(up.pid)
        poster.post_until_refused(stop_after=STOP_AFTER_BATCHES)
        # SIGTERM while a batch is on its way: the poster goes on until it is refused.
        thread = threading.Thread(target=poster.post_until_refused)
        thread.start()
        while poster.posted == STOP_AFTER_BATCHES and thread.is_alive():
            time.sleep(0.01)
        output = _stop(up, log)
        thread.join(timeout=60)
        assert up.returncode == 0, output
        before_restart = list(poster.accepted)
        assert len(before_restart) > STOP_AFTER_BATCHES * BATCH, poster.answers
        # The broker is gone: what is stored now is all that will ever be of these.
        # Rows equal to distinct ids, and every id there: once each, none missing.
        assert _counted_once(url, before_restart) == (len(before_restart),) * 2, output
        assert len(stored_ids(url, before_restart) or ()) == len(before_restart)
        assert len(folded_ids(url, before_restart) or ()) == len(before_restart)
        for step in ("gateway closed", "intake stage drained", "compliance stage drained"):
            assert step in output, output
        assert "stopped Tansu broker" in output, output

        up = _up(up_env, port, log)
        _wait_ready(up, base, log)
        children = _descendants(up.pid)
        poster.post_until_refused()  # what was refused, and the rest, posted again
        assert poster.posted == len(batches), poster.answers
        deadline = time.monotonic() + 120
        while len(folded_ids(url, poster.accepted) or ()) < CHECKINS:
            assert time.monotonic() < deadline, "the restarted up did not store the rest"
            time.sleep(0.5)
        output = _stop(up, log)
    finally:
        if up.poll() is None:
            up.kill()
        for pid in children:
            kill_group(pid)
    assert not poster.unexpected, poster.unexpected
    assert len(poster.accepted) == len(set(poster.accepted)) == CHECKINS
    assert _counted_once(url, poster.accepted) == (CHECKINS, CHECKINS)
    assert len(stored_ids(url, poster.accepted) or ()) == CHECKINS
    assert len(folded_ids(url, poster.accepted) or ()) == CHECKINS
    print(f"\nanswers: {dict(poster.answers)}")
