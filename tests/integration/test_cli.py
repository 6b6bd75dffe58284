"""The `wangge` command as a user runs it: a real process, real PostGIS, real broker."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from geodata.contract import Topics
from geodata.db.engine import create_db_engine

pytestmark = pytest.mark.integration

WANGGE = [sys.executable, "-m", "wangge"]


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "WANGGE_DATABASE_URL": database_url,
        "WANGGE_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "200",
        **extra,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_import_without_schema_says_to_run_db_upgrade(
    database_factory: Callable[..., str], tmp_path: Path
) -> None:
    url = database_factory(migrated=False)
    path = tmp_path / "empty.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}')
    done = subprocess.run(
        [*WANGGE, "dataset", "import", str(path)],
        env=_env(url, tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "wangge db upgrade" in done.stderr


def _metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def _up_env(url: str, tmp_path: Path, kafka_bootstrap: str, topics: Topics) -> dict[str, str]:
    """Its own topic namespace, and so its own consumer groups: no test shares events."""
    namespace = topics.checkins.removesuffix(Topics().checkins)
    return _env(
        url, tmp_path, WANGGE_KAFKA_BOOTSTRAP=kafka_bootstrap, WANGGE_TOPIC_NAMESPACE=namespace
    )


def _start_up(env: dict[str, str], *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [*WANGGE, "up", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_healthy(process: "subprocess.Popen[str]", base: str) -> dict[str, object]:
    """/healthz's body once it is ready, or the last one (the first `up` may install and
    import for minutes, and the consumers beat only once they run)."""
    health: dict[str, object] = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and health.get("status") != "ok":
        with contextlib.suppress(httpx.TransportError):
            health = httpx.get(f"{base}/healthz", timeout=5).json()
        time.sleep(0.5)
    assert process.poll() is None, "wangge up exited early"
    return health


def _post_like_a_phone(url: str, event: dict[str, object], token: str) -> httpx.Response:
    """Post, and post the same event again after a timeout or a 503, as a phone does
    (its event_id makes the repeat harmless); at most three tries."""
    for attempt in range(3):
        try:
            response = httpx.post(
                url, json=event, timeout=30, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TimeoutException:
            if attempt == 2:
                raise
            continue
        if response.status_code != 503 or attempt == 2:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    raise AssertionError("unreachable")


def _stop_up(process: "subprocess.Popen[str]", signum: int) -> str:
    """Signal `up` as a terminal or a service manager would; its whole output."""
    process.send_signal(signum)
    try:
        output, _ = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


def test_up_loads_the_city_and_a_check_in_posted_to_the_api_reaches_its_grid(
    database_factory: Callable[..., str],
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    url = database_factory(migrated=False)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = _up_env(url, tmp_path, kafka_bootstrap, topic_factory())
    process = _start_up(env, "--port", str(port))
    try:
        health = _wait_healthy(process, base)
        assert health["status"] == "ok", health
        database = health["database"]
        assert isinstance(database, dict)
        assert database["grids"] == 1138

        engine = create_db_engine(url)
        try:
            with engine.connect() as conn:
                worker, grid, lon, lat = conn.execute(
                    text(
                        "SELECT wa.worker_id, g.code, ST_X(ST_PointOnSurface(g.geom)),"
                        " ST_Y(ST_PointOnSurface(g.geom)) FROM worker_assignments wa"
                        " JOIN grids g ON g.code = wa.grid_code ORDER BY wa.worker_id LIMIT 1"
                    )
                ).one()
            checkin = {
                "event_id": str(uuid.uuid4()),
                "worker_id": worker,
                "lon": lon,
                "lat": lat,
                "recorded_at": datetime.now(UTC).isoformat(),
                "accuracy_m": 6.0,
            }
            added = subprocess.run(
                [
                    *WANGGE,
                    "users",
                    "add",
                    f"phone-{worker}",
                    "--role",
                    "worker",
                    "--worker",
                    worker,
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            token = added.stdout.strip().splitlines()[-1]
            accepted = _post_like_a_phone(f"{base}/api/v1/checkins", checkin, token)
            assert accepted.status_code == 202, accepted.text
            deadline = time.monotonic() + 60
            while _metric(base, "wangge_events_assigned_total") < 1:
                assert time.monotonic() < deadline, "the consumer never assigned the check-in"
                time.sleep(0.5)
            with engine.connect() as conn:
                stored = conn.execute(
                    text("SELECT grid_code, staff_id FROM checkins WHERE event_id = :id"),
                    {"id": checkin["event_id"]},
                ).one()
        finally:
            engine.dispose()
        assert tuple(stored) == (grid, worker)
        assert _metric(base, "wangge_events_in_total") >= 1
    finally:
        output = _stop_up(process, signal.SIGINT)
    assert "wangge is up" in output, output


def test_generate_then_import_twice_changes_nothing_the_second_time(
    database_url: str, tmp_path: Path
) -> None:
    env = _env(database_url, tmp_path)
    out = tmp_path / "baoji.gpkg"
    generated = subprocess.run(
        [*WANGGE, "dataset", "generate", "--seed", "7", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    assert "1,138" in generated.stdout
    first = subprocess.run(
        [*WANGGE, "dataset", "import", str(out)], env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    second = subprocess.run(
        [*WANGGE, "dataset", "import", str(out)], env=env, capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT count(*) FROM grids")).scalar_one()
    finally:
        engine.dispose()
    assert versions == 1138


def _count_checkins(url: str) -> int:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM checkins")).scalar_one())
    finally:
        engine.dispose()


def test_up_simulate_fills_checkins_while_serving_and_stops_cleanly_on_sigterm(
    database_factory: Callable[..., str],
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    url = database_factory(migrated=False)
    port = _free_port()
    env = _up_env(url, tmp_path, kafka_bootstrap, topic_factory())
    # 3,600× real time: a simulated hour a second, so walks start within seconds.
    simulate = ["--simulate", "--workers", "12", "--speed", "3600"]
    process = _start_up(env, "--port", str(port), *simulate)
    base = f"http://127.0.0.1:{port}"
    try:
        assert _wait_healthy(process, base)["status"] == "ok"

        counts = [0]
        deadline = time.monotonic() + 180
        # Check-ins keep arriving: seen at least twice more after the first ones land.
        while len(counts) < 3 or counts[0] == 0:
            assert time.monotonic() < deadline, f"check-ins did not keep flowing: {counts}"
            assert process.poll() is None, "wangge up exited while simulating"
            now = _count_checkins(url)
            if now > counts[-1]:
                counts = [now] if counts[-1] == 0 else [*counts, now]
            time.sleep(1)
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    finally:
        output = _stop_up(process, signal.SIGTERM)
    assert process.returncode == 0, output
    assert "simulating: wangge simulate --week" in output, output
    assert "simulator stopped" in output, output
    assert "Traceback" not in output, output
