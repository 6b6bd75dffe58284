"""A whole city's accounts from a CSV: `wangge users template`, then `users import`, on the
reference dataset (2,381 workers and a supervisor for each of its 153 areas).
"""

import csv
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from geodata.account_import import AccountImportRefused
from geodata.db.engine import create_db_engine
from grid_service.app import ApiConfig, create_app
from grid_service.auth import AuthConfig, install_auth
from tests.integration.session_support import FETCH, sign_in
from wangge.users_cli import (
    FileExists,
    ImportReport,
    add_user,
    import_users,
    list_users,
    write_template,
)

pytestmark = pytest.mark.integration

WORKERS = 2381
AREAS = 4 + 23 + 126  # districts, streets and communities of seed 2020


@dataclass
class City:
    """A reference city whose template was imported once."""

    database_url: str
    template: Path
    passwords: Path
    report: ImportReport
    progress: list[tuple[str, int, int]]


@pytest.fixture(scope="module")
def imported(
    reference_database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> City:
    """The reference city, its template written and imported (the import is the slow part)."""
    database_url = reference_database_factory()
    folder = tmp_path_factory.mktemp("accounts")
    template = folder / "baoji-accounts.csv"
    assert write_template(database_url, template) == (AREAS, WORKERS)
    progress: list[tuple[str, int, int]] = []
    passwords = folder / "baoji-accounts.passwords.csv"
    report = import_users(database_url, template, passwords, lambda *step: progress.append(step))
    return City(database_url, template, passwords, report, progress)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def _accounts(database_url: str) -> list[tuple[str, str, bool, str]]:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT name, role, password_one_time, password_hash FROM accounts"
                    " ORDER BY name"
                )
            ).all()
    finally:
        engine.dispose()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def test_the_template_lists_every_worker_and_a_supervisor_per_area(imported: City) -> None:
    rows = _rows(imported.template)
    assert list(rows[0]) == ["name", "role", "area", "worker"]
    workers = [r for r in rows if r["role"] == "worker"]
    supervisors = [r for r in rows if r["role"] == "supervisor"]
    assert len(workers) == WORKERS
    assert len({r["worker"] for r in workers}) == WORKERS
    assert all(r["name"] == r["worker"] and not r["area"] for r in workers)
    assert sorted(len(r["area"]) for r in supervisors) == [6] * 4 + [9] * 23 + [12] * 126
    assert all(r["name"] == f"sup-{r['area']}" for r in supervisors)


def test_the_import_creates_every_account_with_a_one_time_password(imported: City) -> None:
    assert imported.report.created == WORKERS + AREAS
    assert imported.report.unchanged == 0
    assert imported.report.passwords_file == imported.passwords
    # The passwords file: readable by its owner only, a line per account, every password new.
    assert stat.S_IMODE(imported.passwords.stat().st_mode) == 0o600
    handed_out = _rows(imported.passwords)
    assert list(handed_out[0]) == [
        "name", "role", "area", "worker", "holder", "one_time_password",
    ]  # fmt: skip
    assert len(handed_out) == WORKERS + AREAS
    passwords = [row["one_time_password"] for row in handed_out]
    assert len(set(passwords)) == len(passwords)
    assert all(len(p) == 19 and p.count("-") == 3 for p in passwords)
    assert all(row["holder"] for row in handed_out)  # a worker's name, an area's name
    # Stored: hashes only, every one to be changed at the first sign-in.
    stored = _accounts(imported.database_url)
    assert len(stored) == WORKERS + AREAS
    assert all(one_time and hashed.startswith("$argon2id$") for _, _, one_time, hashed in stored)
    everything = " ".join(hashed for *_, hashed in stored)
    assert not any(p in everything for p in passwords[:200])
    assert imported.progress[-1] == ("accounts stored", WORKERS + AREAS, WORKERS + AREAS)
    assert ("one-time passwords", WORKERS + AREAS, WORKERS + AREAS) in imported.progress
    assert not list(imported.passwords.parent.glob(".*pending"))


def test_the_same_file_again_changes_nothing(imported: City, tmp_path: Path) -> None:
    before = _accounts(imported.database_url)
    again = import_users(imported.database_url, imported.template, tmp_path / "again.csv")
    assert again == ImportReport(0, WORKERS + AREAS, None)
    assert not (tmp_path / "again.csv").exists()
    assert _accounts(imported.database_url) == before  # passwords too: nobody's was reset


def test_a_file_with_problems_is_refused_whole_and_changes_nothing(
    imported: City, tmp_path: Path
) -> None:
    add_user(imported.database_url, "night-desk", "admin", None, None)
    before = _accounts(imported.database_url)
    rows = _rows(imported.template)
    new_ok = ["new-person", "supervisor", rows[0]["area"], ""]
    lines = [
        ["name", "role", "area", "worker"],
        new_ok,  # line 2: fine on its own
        ["W00001", "supervisor", "610302", ""],  # 3: the name is a worker's account
        ["ghost", "worker", "", "W99999"],  # 4: no such worker
        ["nowhere", "supervisor", "610399", ""],  # 5: no such district
        ["boss", "emperor", "", ""],  # 6: no such role
        ["twice", "admin", "", ""],  # 7
        ["twice", "admin", "", ""],  # 8: the name again
        ["night-desk", "admin", "", ""],  # 9: exists as described: fine
        ["sup-x", "supervisor", "", ""],  # 10: a supervisor without an area
    ]
    path = tmp_path / "broken.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows(lines)
    passwords = tmp_path / "broken.passwords.csv"
    with pytest.raises(AccountImportRefused) as refused:
        import_users(imported.database_url, path, passwords)
    assert [(p.line, p.name) for p in refused.value.problems] == [
        (3, "W00001"),
        (4, "ghost"),
        (5, "nowhere"),
        (6, "boss"),
        (8, "twice"),
        (10, "sup-x"),
    ]
    reasons = [p.reason for p in refused.value.problems]
    assert "already" in reasons[0]
    assert "W00001" in reasons[0]
    assert "W99999" in reasons[1]
    assert "610399" in reasons[2]
    assert "line 7" in reasons[4]
    assert _accounts(imported.database_url) == before
    assert not passwords.exists()
    assert not list(tmp_path.glob(".*pending"))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "the header lacks name, role"),
        ("name,role,area,worker,phone\nx,admin,,,1\n", "unknown columns ['phone']"),
        ("name,role\n", "holds no account"),
    ],
)
def test_a_file_without_the_columns_or_rows_is_refused(
    imported: City, tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AccountImportRefused) as refused:
        import_users(imported.database_url, path, tmp_path / "p.csv")
    assert reason in refused.value.problems[0].reason


def test_the_passwords_file_is_never_overwritten(imported: City, tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("name,role,area,worker\nextra-admin,admin,,\n", encoding="utf-8")
    kept = tmp_path / "handed-out.csv"
    kept.write_text("someone's passwords\n")
    with pytest.raises(FileExists):
        import_users(imported.database_url, path, kept)
    assert kept.read_text() == "someone's passwords\n"
    assert "extra-admin" not in [name for name, *_ in _accounts(imported.database_url)]


def test_an_imported_account_signs_in_only_after_choosing_its_password(imported: City) -> None:
    handed_out = {row["name"]: row for row in _rows(imported.passwords)}
    worker = next(row for row in handed_out.values() if row["role"] == "worker")
    supervisor = next(row for row in handed_out.values() if row["role"] == "supervisor")
    app = create_app(ApiConfig(imported.database_url, "127.0.0.1:9"))
    install_auth(app, AuthConfig(sign_in_rate_per_s=100, sign_in_burst=100))
    with TestClient(app) as client:
        for row in (worker, supervisor):
            first = sign_in(client, row["name"], row["one_time_password"])
            assert (first.status_code, first.json()["code"]) == (403, "password_change_required")
            chosen = f"{row['holder']}-chose-this-one"
            changed = client.post(
                "/api/v1/session/password",
                json={
                    "username": row["name"],
                    "password": row["one_time_password"],
                    "new_password": chosen,
                },
                headers=FETCH,
            )
            assert changed.status_code == 200, changed.text
            me = client.get("/api/v1/session").json()
            assert (me["name"], me["role"]) == (row["name"], row["role"])
            assert me["worker_id"] == (row["worker"] or None)
            assert me["area_prefix"] == (row["area"] or None)
    listed, total = list_users(imported.database_url, None, None, None)
    assert total >= WORKERS + AREAS
    by_name = {account.name: account for account in listed}
    assert by_name[worker["name"]].password == "set"
    assert by_name[supervisor["name"]].password == "set"
    assert sum(account.password == "one-time" for account in listed) >= WORKERS + AREAS - 2


def test_the_cli_prints_no_password_and_lists_the_accounts(imported: City, tmp_path: Path) -> None:
    path = tmp_path / "desk.csv"
    path.write_text("name,role,area,worker\ndesk-1,admin,,\ndesk-2,admin,,\n", encoding="utf-8")
    env = {**os.environ, "WANGGE_DATABASE_URL": imported.database_url, "COLUMNS": "200"}
    run = [sys.executable, "-m", "wangge", "users"]
    done = subprocess.run(
        [*run, "import", str(path)], env=env, capture_output=True, text=True, check=True
    )
    passwords = _rows(path.with_name("desk.passwords.csv"))
    assert [row["name"] for row in passwords] == ["desk-1", "desk-2"]
    for row in passwords:
        assert row["one_time_password"] not in done.stdout + done.stderr
    assert "created 2 account(s)" in done.stdout
    assert "desk.passwords.csv" in done.stdout
    refused = subprocess.run(
        [*run, "import", str(imported.template)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 0  # all there as described: nothing to do, not an error
    assert f"{WORKERS + AREAS:,} already there" in refused.stdout
    listing = subprocess.run(
        [*run, "list", "--role", "admin"], env=env, capture_output=True, text=True, check=True
    )
    assert "desk-1" in listing.stdout
    assert "one-time" in listing.stdout
    assert "of " in listing.stdout.splitlines()[-1]
