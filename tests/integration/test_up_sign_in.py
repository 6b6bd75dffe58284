"""`wangge up` on a fresh database: one line with the map and the local admin's sign-in,
not buried under the libraries' INFO logs; and the local admin's rules on their own.
"""

import re
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from geodata.contract import Topics
from geodata.db import accounts_store
from geodata.db.engine import create_db_engine, unit_of_work
from geodata.db.sign_in import set_password
from geodata.passwords import hash_password
from tests.integration.session_support import FETCH
from tests.integration.test_cli import _free_port, _start_up, _up_env
from wangge.users_cli import ADMIN_PASSWORD_FILE, add_user, ensure_local_admin

pytestmark = pytest.mark.integration

UP_LINE = re.compile(r"wangge is up: (\S+)/map +sign in as admin password (\S+) ")


class Output:
    """The lines a running `wangge up` has printed so far, read in a thread."""

    def __init__(self, process: "subprocess.Popen[str]") -> None:
        self.lines: list[str] = []
        self._process = process
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def stop(self) -> list[str]:
        """SIGINT, as Ctrl-C; every line printed until it exited."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=10)
        return self.lines

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout_s: float = 300) -> str:
        """The first line matching `pattern`, waiting for it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            assert self._process.poll() is None, "\n".join(self.lines)
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))


def test_up_prints_the_admin_sign_in_and_keeps_library_logs_out_of_the_way(
    database_factory: Callable[..., str],
    tmp_path: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    url = database_factory(migrated=False)
    port = _free_port()
    env = _up_env(url, tmp_path, kafka_bootstrap, topic_factory())
    output = Output(_start_up(env, "--port", str(port)))
    try:
        line = output.wait_for("wangge is up")
        found = UP_LINE.search(line)
        assert found, line
        base, password = found.groups()
        assert base == f"http://127.0.0.1:{port}"
        kept = tmp_path / "state" / ADMIN_PASSWORD_FILE
        assert kept.read_text().strip() == password
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        # The newcomer signs in with it, and reads the city.
        client = httpx.Client(base_url=base, headers=FETCH, timeout=30)
        signed_in = client.post("/api/v1/session", json={"username": "admin", "password": password})
        assert signed_in.status_code == 200, signed_in.text
        compliance = client.get("/api/v1/compliance", params={"week": "2020-W37"})
        assert compliance.status_code == 200, compliance.text
        for _ in range(5):
            client.get("/api/v1/grids/locate", params={"lon": 107.15, "lat": 34.37})
        changed = client.post(
            "/api/v1/session/password",
            json={"password": password, "new_password": "a-password-of-my-own-7"},
        )
        assert changed.status_code == 200, changed.text
        time.sleep(2)
    finally:
        lines = output.stop()
    # While it serves (its shutdown may log a library's error, which is let through).
    serving = "\n".join(lines[: next(i for i, x in enumerate(lines) if x.startswith("stopping"))])
    assert not re.search(r"\b(kafka|alembic)\.\S+ ", serving), serving
    assert "GET /api/v1/" not in serving  # no access log line per request
    assert serving.count("wangge is up") == 1

    # The password was changed: the next `up` says so, and the file is gone.
    restarted = Output(_start_up(env, "--port", str(port)))
    try:
        again = restarted.wait_for("wangge is up")
    finally:
        restarted.stop()
    assert "sign in as admin with the password you chose" in again
    assert not kept.exists()


def test_the_local_admin_is_made_once_and_offered_while_its_password_stands(
    database_url: str, tmp_path: Path
) -> None:
    first = ensure_local_admin(database_url, tmp_path)
    assert first is not None
    assert first.password is not None
    assert (tmp_path / ADMIN_PASSWORD_FILE).read_text().strip() == first.password
    again = ensure_local_admin(database_url, tmp_path)
    assert again == first
    engine = create_db_engine(database_url)
    try:
        with unit_of_work(engine) as session:
            account = accounts_store.account_id(session, "admin")
            set_password(
                session, account, hash_password("chosen-by-the-admin"), one_time=False,
                now=datetime.now(UTC),
            )  # fmt: skip
    finally:
        engine.dispose()
    changed = ensure_local_admin(database_url, tmp_path)
    assert changed is not None
    assert changed.password is None
    assert not (tmp_path / ADMIN_PASSWORD_FILE).exists()


def test_no_local_admin_where_the_admins_are_someone_elses(
    database_url: str, tmp_path: Path
) -> None:
    add_user(database_url, "city-it", "admin", None, None)
    assert ensure_local_admin(database_url, tmp_path) is None
    assert not (tmp_path / ADMIN_PASSWORD_FILE).exists()
