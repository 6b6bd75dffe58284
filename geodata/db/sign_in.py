"""Signing people in: passwords checked against PostGIS, failure runs, sessions.

A sign-in reads the account and the name's failure run in one short transaction, checks
the password with no connection held (argon2 takes ~40 ms), then writes the outcome in
another: the failure counted, or the run cleared and a session started. The outcomes
are returned, not raised, so that a failure's count commits with the transaction that
answers it. Times come from the caller's clock: expiry and lock-out are testable.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from geodata.accounts import MAX_NAME_LENGTH, Principal, Role
from geodata.db.engine import unit_of_work
from geodata.db.models import Account, AccountSession, SignInFailure
from geodata.passwords import (
    FailureState,
    SignInPolicy,
    after_failure,
    check_new_password,
    hash_one_time_password,
    hash_password,
    hash_session_id,
    locked_until,
    needs_rehash,
    new_one_time_password,
    new_session_id,
    verify_password,
)

KEPT_FOR_AUDIT: Final = timedelta(days=30)
"""How long sessions stay after their expiry, and failure runs after their last failure."""


class Outcome(StrEnum):
    """What a sign-in attempt came to."""

    SIGNED_IN = "signed_in"
    INVALID = "invalid_credentials"
    LOCKED = "account_locked"
    CHANGE_REQUIRED = "password_change_required"


@dataclass(frozen=True, slots=True)
class StartedSession:
    """A session just started: its id (for the cookie only), who it speaks for, its end."""

    session_id: str
    principal: Principal
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignInResult:
    """The outcome of an attempt; a session only when signed in, a time only when locked."""

    outcome: Outcome
    session: StartedSession | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Holder:
    account_id: int
    name: str
    role: str
    area_prefix: str | None
    worker_id: str | None
    password_hash: str | None
    one_time: bool


# --------------------------------------------------------------------------- reads


def _holder(session: Session, username: str) -> _Holder | None:
    row = session.execute(
        select(
            Account.id,
            Account.name,
            Account.role,
            Account.area_prefix,
            Account.worker_id,
            Account.password_hash,
            Account.password_one_time,
        ).where(Account.name == username)
    ).one_or_none()
    return None if row is None else _Holder(*row)


def failure_state(session: Session, username: str) -> FailureState | None:
    """The name's current run of failures, or None."""
    row = session.get(SignInFailure, username)
    if row is None:
        return None
    return FailureState(row.failures, row.last_failed_at, row.locked_until)


def _principal(holder: _Holder, session_id: int) -> Principal:
    return Principal(
        account_id=holder.account_id,
        token_id=session_id,
        name=holder.name,
        role=Role(holder.role),
        area_prefix=holder.area_prefix,
        worker_id=holder.worker_id,
        via_session=True,
    )


@dataclass(frozen=True, slots=True)
class SessionLookup:
    """A live (not ended) session's caller and its expiry, which the caller's clock judges."""

    principal: Principal
    expires_at: datetime


def session_by_hash(session: Session, session_hash: str) -> SessionLookup | None:
    """The session with this id hash unless it was ended; its expiry is the caller's to check."""
    row = session.execute(
        select(
            AccountSession.id,
            AccountSession.expires_at,
            Account.id.label("account_id"),
            Account.name,
            Account.role,
            Account.area_prefix,
            Account.worker_id,
        )
        .join(Account, Account.id == AccountSession.account_id)
        .where(AccountSession.session_hash == session_hash, AccountSession.ended_at.is_(None))
    ).one_or_none()
    if row is None:
        return None
    holder = _Holder(
        row.account_id, row.name, row.role, row.area_prefix, row.worker_id, None, one_time=False
    )
    return SessionLookup(_principal(holder, row.id), row.expires_at)


# --------------------------------------------------------------------------- writes


def record_failure(
    session: Session, username: str, now: datetime, policy: SignInPolicy
) -> FailureState:
    """Count one failure of `username` (row-locked against concurrent attempts)."""
    first = after_failure(None, now, policy)
    inserted = session.execute(
        pg_insert(SignInFailure)
        .values(
            username=username,
            failures=first.failures,
            last_failed_at=first.last_failed_at,
            locked_until=first.locked_until,
        )
        .on_conflict_do_nothing()
        .returning(SignInFailure.username)
    ).scalar_one_or_none()
    if inserted is not None:
        return first
    row = session.execute(
        select(SignInFailure).where(SignInFailure.username == username).with_for_update()
    ).scalar_one()
    state = after_failure(
        FailureState(row.failures, row.last_failed_at, row.locked_until), now, policy
    )
    row.failures, row.last_failed_at, row.locked_until = (
        state.failures,
        state.last_failed_at,
        state.locked_until,
    )
    session.flush()
    return state


def clear_failures(session: Session, username: str) -> None:
    """Forget the name's failure run (a successful sign-in, or an admin's reset)."""
    session.execute(delete(SignInFailure).where(SignInFailure.username == username))


def start_session(
    session: Session, holder_id: int, now: datetime, lifetime: timedelta
) -> tuple[str, int, datetime]:
    """Insert a session; return its plaintext id (stored nowhere), row id and expiry."""
    session_id = new_session_id()
    expires_at = now + lifetime
    row_id = session.execute(
        insert(AccountSession)
        .values(
            account_id=holder_id,
            session_hash=hash_session_id(session_id),
            created_at=now,
            expires_at=expires_at,
        )
        .returning(AccountSession.id)
    ).scalar_one()
    return session_id, row_id, expires_at


def end_session(session: Session, session_hash: str, now: datetime) -> int | None:
    """End the live session with this id hash (sign-out); its row id, or None if none was."""
    ended = session.execute(
        update(AccountSession)
        .where(AccountSession.session_hash == session_hash, AccountSession.ended_at.is_(None))
        .values(ended_at=now)
        .returning(AccountSession.id)
    ).scalar_one_or_none()
    return ended


def end_sessions(session: Session, account_id: int, now: datetime) -> int:
    """End every live session of the account (a password change or reset); how many."""
    ended = session.execute(
        update(AccountSession)
        .where(AccountSession.account_id == account_id, AccountSession.ended_at.is_(None))
        .values(ended_at=now)
        .returning(AccountSession.id)
    ).all()
    return len(ended)


def set_password(
    session: Session, account_id: int, password_hash: str, *, one_time: bool, now: datetime
) -> None:
    """Store a password hash (made by geodata.passwords) for the account."""
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(password_hash=password_hash, password_one_time=one_time, password_set_at=now)
    )


def reset_password(session: Session, account_id: int, name: str, now: datetime) -> str:
    """Give the account a new one-time password, end its sessions and lift any lock.

    Returns the password, which is stored only as its hash.
    """
    password = new_one_time_password()
    set_password(session, account_id, hash_one_time_password(password), one_time=True, now=now)
    end_sessions(session, account_id, now)
    clear_failures(session, name)
    return password


def prune(session: Session, now: datetime) -> None:
    """Drop sessions expired, and failure runs quiet, for longer than the audit keeps.

    A session signed out early goes with its expiry too: by the index on `expires_at`,
    each sign-in's prune reads only what it deletes.
    """
    horizon = now - KEPT_FOR_AUDIT
    session.execute(delete(AccountSession).where(AccountSession.expires_at < horizon))
    session.execute(delete(SignInFailure).where(SignInFailure.last_failed_at < horizon))


# --------------------------------------------------------------------------- sign-in


def sign_in(
    engine: Engine,
    username: str,
    password: str,
    now: datetime,
    policy: SignInPolicy,
    *,
    new_password: str | None = None,
) -> SignInResult:
    """Check a name and password; start a session, or say why not.

    With `new_password`, the password is replaced first (the way a one-time password is
    changed at the first sign-in, and how a signed-in person changes theirs): every other
    session of the account ends. WeakPassword if the policy refuses the new one; that is
    checked before anything else, and counts no failure.
    """
    if new_password is not None:
        check_new_password(new_password, name=username, old_password=password, policy=policy)
    known_name = 0 < len(username) <= MAX_NAME_LENGTH
    with Session(engine) as session:
        state = failure_state(session, username) if known_name else None
        holder = _holder(session, username) if known_name else None
    lock = locked_until(state, now)
    if lock is not None:
        return SignInResult(Outcome.LOCKED, locked_until=lock)
    # Outside any transaction: argon2 is slow on purpose, and holds no connection meanwhile.
    verified = verify_password(None if holder is None else holder.password_hash, password)
    fresh_hash = None if new_password is None else hash_password(new_password)
    with unit_of_work(engine) as session:
        if not verified or holder is None:
            if not known_name:
                return SignInResult(Outcome.INVALID)
            failed = record_failure(session, username, now, policy)
            lock = locked_until(failed, now)
            if lock is not None:
                return SignInResult(Outcome.LOCKED, locked_until=lock)
            return SignInResult(Outcome.INVALID)
        clear_failures(session, username)
        if fresh_hash is not None:
            set_password(session, holder.account_id, fresh_hash, one_time=False, now=now)
            end_sessions(session, holder.account_id, now)
        elif holder.one_time:
            return SignInResult(Outcome.CHANGE_REQUIRED)
        elif holder.password_hash is not None and needs_rehash(holder.password_hash):
            # Hashed with older parameters: stored again at today's cost.
            set_password(
                session, holder.account_id, hash_password(password), one_time=False, now=now
            )
        prune(session, now)
        session_id, row_id, expires_at = start_session(
            session, holder.account_id, now, policy.session_lifetime
        )
        return SignInResult(
            Outcome.SIGNED_IN, StartedSession(session_id, _principal(holder, row_id), expires_at)
        )
