"""`wangge users`: accounts, their tokens and passwords, a whole city's accounts at once,
and the local admin `wangge up` makes on a fresh machine."""

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from geodata.account_import import (
    COLUMNS,
    MAX_FILE_BYTES,
    AccountImportRefused,
    Problem,
    plan_import,
    read_rows,
)
from geodata.accounts import AccountSpec, Role, account_spec
from geodata.db import accounts_store, migrate, sign_in
from geodata.db.engine import create_db_engine, unit_of_work
from geodata.db.models import Account
from geodata.errors import WanggeError
from geodata.passwords import (
    hash_one_time_password,
    hash_password,
    new_one_time_password,
    verify_password,
)


def add_user(database_url: str, name: str, role: str, area: str | None, worker: str | None) -> str:
    """Create an account and its first token; return the token, which is stored hashed only."""
    spec = account_spec(name, role, area, worker)
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
        with unit_of_work(engine) as session:
            account = accounts_store.create_account(session, spec)
            return accounts_store.add_token(session, account)
    finally:
        engine.dispose()


def issue_token(database_url: str, name: str) -> str:
    """Issue another token for an existing account (its other tokens stay valid)."""
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
        with unit_of_work(engine) as session:
            return accounts_store.add_token(session, accounts_store.account_id(session, name))
    finally:
        engine.dispose()


def revoke_tokens(database_url: str, name: str) -> int:
    """Revoke every live token of an account; return how many there were.

    A running API may accept a revoked token for up to its token cache TTL (5 s).
    """
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
        with unit_of_work(engine) as session:
            return accounts_store.revoke_tokens(session, accounts_store.account_id(session, name))
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- a whole city

PASSWORD_COLUMNS: Final = ("name", "role", "area", "worker", "holder", "one_time_password")
"""The passwords file: each account's row and its one-time password, to hand out."""


class FileExists(WanggeError):
    """An output file is there already: never overwritten (it may hold handed-out passwords)."""

    code = "file_exists"


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did: accounts created, accounts already there as the file describes."""

    created: int
    unchanged: int
    passwords_file: Path | None


def default_passwords_path(accounts_csv: Path) -> Path:
    """Where an import writes the one-time passwords unless told: beside the file."""
    return accounts_csv.with_name(f"{accounts_csv.stem}.passwords.csv")


def import_users(
    database_url: str,
    accounts_csv: Path,
    passwords_csv: Path,
    progress: Callable[[str, int, int], None] | None = None,
) -> ImportReport:
    """Create the file's accounts with one-time passwords, written to `passwords_csv` (0600).

    All or nothing: AccountImportRefused lists every problem and nothing is stored or
    written. Accounts that exist as the file describes are left as they are.
    """
    size = accounts_csv.stat().st_size
    if size > MAX_FILE_BYTES:
        raise AccountImportRefused([Problem(1, "", f"the file is over {MAX_FILE_BYTES} bytes")])
    try:
        text = accounts_csv.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AccountImportRefused([Problem(1, "", f"not UTF-8: {exc}")]) from None
    rows, problems = read_rows(text)
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
        with Session(engine) as session:
            existing = accounts_store.accounts_named(session, [row.spec.name for row in rows])
            workers = accounts_store.worker_names(session)
            areas = accounts_store.area_names(session)
        plan = plan_import(
            rows,
            existing=existing,
            known_workers=workers,
            known_areas=areas,
            problems_read=problems,
        )
        if not plan.create:
            return ImportReport(0, len(plan.unchanged), None)
        if passwords_csv.exists():
            raise FileExists(f"{passwords_csv} exists; move it away or name another --passwords")
        now = datetime.now(UTC)
        hashed: list[tuple[AccountSpec, str]] = []
        handed_out: list[list[str]] = []
        total = len(plan.create)
        for done, row in enumerate(plan.create, start=1):
            spec = row.spec
            password = new_one_time_password()
            hashed.append((spec, hash_one_time_password(password)))
            holder = workers.get(spec.worker_id or "") or areas.get(spec.area_prefix or "") or ""
            handed_out.append(
                [
                    spec.name,
                    spec.role.value,
                    spec.area_prefix or "",
                    spec.worker_id or "",
                    holder,
                    password,
                ]
            )
            if progress is not None and (done % 100 == 0 or done == total):
                progress("one-time passwords", done, total)
        # The passwords reach their final name only once the accounts are committed.
        pending = _write_private_csv(passwords_csv, PASSWORD_COLUMNS, handed_out)
        try:
            with unit_of_work(engine) as session:
                accounts_store.insert_accounts(session, hashed, now)
        except IntegrityError:
            pending.unlink()
            raise AccountImportRefused(
                [Problem(1, "", "another import or `users add` took some names meanwhile")]
            ) from None
        except BaseException:
            pending.unlink()
            raise
        if progress is not None:
            progress("accounts stored", total, total)
        pending.rename(passwords_csv)
        return ImportReport(total, len(plan.unchanged), passwords_csv)
    finally:
        engine.dispose()


def _write_private_csv(final: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """Write the rows to a new file beside `final`, readable by its owner only; its path."""
    pending = final.with_name(f".{final.name}.{os.getpid()}.pending")
    descriptor = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return pending


def write_template(database_url: str, out: Path) -> tuple[int, int]:
    """Write an import file of the loaded city: a supervisor for every district, street and
    community (`sup-CODE`) and an account for every worker (named by its id).

    Returns how many supervisors and workers it lists.
    """
    if out.exists():
        raise FileExists(f"{out} exists; move it away or choose another --out")
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
        with Session(engine) as session:
            areas = sorted(accounts_store.area_names(session))
            workers = sorted(accounts_store.worker_names(session))
    finally:
        engine.dispose()
    rows = [[f"sup-{code}", "supervisor", code, ""] for code in areas]
    rows += [[worker, "worker", "", worker] for worker in workers]
    with out.open("x", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return len(areas), len(workers)


def list_users(
    database_url: str, role: Role | None, area: str | None, limit: int | None
) -> tuple[list[accounts_store.AccountSummary], int]:
    """The accounts by name (filtered), and how many match."""
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
        with Session(engine) as session:
            return accounts_store.list_accounts(
                session, datetime.now(UTC), role=role, area=area, limit=limit
            )
    finally:
        engine.dispose()


def reset_password(database_url: str, name: str) -> str:
    """Give an account a new one-time password (its sessions end, any lock is lifted)."""
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
        with unit_of_work(engine) as session:
            account = accounts_store.account_id(session, name)
            return sign_in.reset_password(session, account, name, datetime.now(UTC))
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- `wangge up`

LOCAL_ADMIN: Final = "admin"
ADMIN_PASSWORD_FILE: Final = "admin-password"


@dataclass(frozen=True, slots=True)
class LocalAdmin:
    """The local admin's sign-in: its password while it is still the one first given."""

    name: str
    password: str | None
    password_file: Path


def ensure_local_admin(database_url: str, state_dir: Path) -> LocalAdmin | None:
    """On a database without any admin, create `admin` with a random password kept in
    `state_dir/admin-password` (0600); later, that password while it is still the admin's.

    None when the database's admins are someone else's (no `admin` made here).
    """
    password_file = state_dir / ADMIN_PASSWORD_FILE
    engine = create_db_engine(database_url)
    try:
        with unit_of_work(engine) as session:
            # One `up` at a time makes the admin: the second waits here, then finds it.
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext('wangge.local_admin'))"))
            stored = session.execute(
                select(Account.password_hash).where(
                    Account.name == LOCAL_ADMIN, Account.role == Role.ADMIN.value
                )
            ).one_or_none()
            any_admin = session.execute(
                select(Account.id).where(Account.role == Role.ADMIN.value).limit(1)
            ).first()
            if stored is None and any_admin is None:
                password = new_one_time_password()
                account = accounts_store.create_account(
                    session, AccountSpec(LOCAL_ADMIN, Role.ADMIN)
                )
                sign_in.set_password(
                    session, account, hash_password(password), one_time=False, now=datetime.now(UTC)
                )
                state_dir.mkdir(parents=True, exist_ok=True)
                password_file.unlink(missing_ok=True)
                descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                    file.write(password + "\n")
                return LocalAdmin(LOCAL_ADMIN, password, password_file)
    finally:
        engine.dispose()
    if stored is None or stored.password_hash is None:
        return None  # the admins are someone else's, or sign in with tokens only
    password_hash: str = stored.password_hash
    try:
        kept = password_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return LocalAdmin(LOCAL_ADMIN, None, password_file)
    if verify_password(password_hash, kept):
        return LocalAdmin(LOCAL_ADMIN, kept, password_file)
    # The admin chose another password: the file's is no use to anyone now.
    password_file.unlink(missing_ok=True)
    return LocalAdmin(LOCAL_ADMIN, None, password_file)
