"""Accounts and their bearer tokens in PostGIS; functions flush, the caller commits."""

from sqlalchemy import func, select, update
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
    AccountToken,
    Community,
    District,
    Street,
    Worker,
    WorkerAssignment,
)
from geodata.errors import WorkerNotFound

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
