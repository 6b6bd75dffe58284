"""`wangge users`: create accounts and issue or revoke their bearer tokens."""

from geodata.accounts import account_spec
from geodata.db import accounts_store, migrate
from geodata.db.engine import create_db_engine, unit_of_work


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
