"""Accounts and their bearer tokens in PostGIS; functions flush, the caller commits."""

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from geodata.accounts import (
    AccountExists,
    AccountNotFound,
    AccountSpec,
    InvalidAccount,
    Principal,
    Role,
    hash_token,
    new_token,
)
from geodata.db.models import (
    Account,
    AccountSession,
    AccountToken,
    Community,
    District,
    SignInFailure,
    Street,
    Worker,
    WorkerAssignment,
)
from geodata.errors import WorkerNotFound

T = TypeVar("T")

_AREAS: dict[int, tuple[type[District | Street | Community], str]] = {
    6: (District, "district"),
    9: (Street, "street"),
    12: (Community, "community"),
}


def create_account(session: Session, spec: AccountSpec) -> int:
    """Insert the account and return its id; its worker or area must exist."""
    if spec.worker_id is not None and session.get(Worker, spec.worker_id) is None:
        raise WorkerNotFound(f"no worker has the id {spec.worker_id!r}")
    if spec.area_prefix is not None:
        table, level = _AREAS[len(spec.area_prefix)]
        if session.get(table, spec.area_prefix) is None:
            raise InvalidAccount(f"no {level} has the code {spec.area_prefix}")
    account = Account(
        name=spec.name, role=spec.role.value, area_prefix=spec.area_prefix, worker_id=spec.worker_id
    )
    try:
        # A savepoint, so that a taken name leaves the caller's transaction usable.
        with session.begin_nested():
            session.add(account)
    except IntegrityError:
        raise AccountExists(f"an account named {spec.name!r} exists already") from None
    return account.id


def account_id(session: Session, name: str) -> int:
    """The id of the account named `name`; AccountNotFound if there is none."""
    found = session.execute(select(Account.id).where(Account.name == name)).scalar_one_or_none()
    if found is None:
        raise AccountNotFound(f"no account is named {name!r}")
    return found


def add_token(session: Session, account: int) -> str:
    """Issue a new token for the account; return the plaintext, which is stored nowhere."""
    token = new_token()
    session.add(AccountToken(account_id=account, token_hash=hash_token(token)))
    session.flush()
    return token


def revoke_tokens(session: Session, account: int) -> int:
    """Revoke every live token of the account; return how many were live."""
    result = session.execute(
        update(AccountToken)
        .where(AccountToken.account_id == account, AccountToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return int(getattr(result, "rowcount", 0))


def principal_for(session: Session, token_hash: str) -> Principal | None:
    """Who the live token with this hash speaks for, or None if unknown or revoked."""
    row = session.execute(
        select(
            Account.id,
            AccountToken.id.label("token_id"),
            Account.name,
            Account.role,
            Account.area_prefix,
            Account.worker_id,
        )
        .join(AccountToken, AccountToken.account_id == Account.id)
        .where(AccountToken.token_hash == token_hash, AccountToken.revoked_at.is_(None))
    ).one_or_none()
    if row is None:
        return None
    return Principal(
        account_id=row.id,
        token_id=row.token_id,
        name=row.name,
        role=Role(row.role),
        area_prefix=row.area_prefix,
        worker_id=row.worker_id,
    )


def worker_grid_codes(session: Session, worker_id: str) -> list[str]:
    """Every grid the worker is or ever was assigned to; empty for an unknown worker."""
    return list(
        session.execute(
            select(WorkerAssignment.grid_code)
            .where(WorkerAssignment.worker_id == worker_id)
            .distinct()
            .order_by(WorkerAssignment.grid_code)
        ).scalars()
    )


# --------------------------------------------------------------------------- many accounts


def accounts_named(session: Session, names: Collection[str]) -> dict[str, AccountSpec]:
    """The stored accounts among `names`, as specs (to compare with an import's rows)."""
    found: dict[str, AccountSpec] = {}
    for chunk in _chunks(sorted(names)):
        rows = session.execute(
            select(Account.name, Account.role, Account.area_prefix, Account.worker_id).where(
                Account.name.in_(chunk)
            )
        )
        for name, role, area, worker in rows:
            found[name] = AccountSpec(name, Role(role), area, worker)
    return found


def worker_names(session: Session) -> dict[str, str]:
    """Every worker of the city: its name by its id."""
    # .all(): a Result has keys(), which dict() would take for a mapping's.
    return dict(session.execute(select(Worker.worker_id, Worker.name)).tuples().all())


def area_names(session: Session) -> dict[str, str]:
    """Every district, street and community of the city: its name by its code."""
    names: dict[str, str] = {}
    for table, _level in _AREAS.values():
        names.update(session.execute(select(table.code, table.name)).tuples().all())
    return names


def insert_accounts(
    session: Session, accounts: Sequence[tuple[AccountSpec, str]], now: datetime
) -> None:
    """Insert accounts with one-time password hashes, in one statement per thousand."""
    for chunk in _chunks(list(accounts)):
        session.execute(
            insert(Account),
            [
                {
                    "name": spec.name,
                    "role": spec.role.value,
                    "area_prefix": spec.area_prefix,
                    "worker_id": spec.worker_id,
                    "password_hash": password_hash,
                    "password_one_time": True,
                    "password_set_at": now,
                }
                for spec, password_hash in chunk
            ],
        )


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """What an admin sees of an account: never a hash, a token or a session id."""

    name: str
    role: Role
    area_prefix: str | None
    worker_id: str | None
    password: str  # "none", "one-time" or "set"
    locked_until: datetime | None
    live_tokens: int
    live_sessions: int
    created_at: datetime


def list_accounts(
    session: Session,
    now: datetime,
    *,
    role: Role | None = None,
    area: str | None = None,
    limit: int | None = None,
) -> tuple[list[AccountSummary], int]:
    """Accounts by name (a role's, an area's: codes under `area`), and how many match."""
    tokens = (
        select(func.count())
        .where(AccountToken.account_id == Account.id, AccountToken.revoked_at.is_(None))
        .scalar_subquery()
    )
    sessions = (
        select(func.count())
        .where(
            AccountSession.account_id == Account.id,
            AccountSession.ended_at.is_(None),
            AccountSession.expires_at > now,
        )
        .scalar_subquery()
    )
    lock = (
        select(SignInFailure.locked_until)
        .where(SignInFailure.username == Account.name, SignInFailure.locked_until > now)
        .scalar_subquery()
    )
    query = select(
        Account.name,
        Account.role,
        Account.area_prefix,
        Account.worker_id,
        Account.password_hash.is_not(None).label("has_password"),
        Account.password_one_time,
        lock.label("locked_until"),
        tokens.label("live_tokens"),
        sessions.label("live_sessions"),
        Account.created_at,
    )
    if role is not None:
        query = query.where(Account.role == role.value)
    if area:
        # A worker is under an area when one of its grids is.
        grids = select(WorkerAssignment.worker_id).where(
            WorkerAssignment.grid_code.startswith(area, autoescape=True)
        )
        query = query.where(
            Account.area_prefix.startswith(area, autoescape=True) | Account.worker_id.in_(grids)
        )
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(query.order_by(Account.name).limit(limit)).all()
    return [
        AccountSummary(
            name=row.name,
            role=Role(row.role),
            area_prefix=row.area_prefix,
            worker_id=row.worker_id,
            password=("one-time" if row.password_one_time else "set")
            if row.has_password
            else "none",
            locked_until=row.locked_until,
            live_tokens=row.live_tokens,
            live_sessions=row.live_sessions,
            created_at=row.created_at,
        )
        for row in rows
    ], int(total)


@dataclass(frozen=True, slots=True)
class Holder:
    """Who an account belongs to, in words: the worker's name, the area's name."""

    worker_name: str | None
    area_name: str | None


def holder_of(session: Session, worker_id: str | None, area_prefix: str | None) -> Holder:
    """The worker's name and the area's name of an account, where it has them."""
    worker_name = None
    if worker_id is not None:
        worker_name = session.execute(
            select(Worker.name).where(Worker.worker_id == worker_id)
        ).scalar_one_or_none()
    area_name = None
    if area_prefix is not None and len(area_prefix) in _AREAS:
        table, _level = _AREAS[len(area_prefix)]
        area_name = session.execute(
            select(table.name).where(table.code == area_prefix)
        ).scalar_one_or_none()
    return Holder(worker_name, area_name)


def _chunks(items: Sequence[T], size: int = 1000) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
