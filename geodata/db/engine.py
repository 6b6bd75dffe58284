"""Engines and sessions from a plain libpq URL."""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPICursor, ExecuteStyle, ExecutionContext
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.pool.base import _ConnectionFairy, _ConnectionRecord

logger = logging.getLogger(__name__)


def sqlalchemy_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` URLs and pick the psycopg 3 driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same URL without SQLAlchemy's driver suffix, for psycopg or other tools."""
    parsed = make_url(sqlalchemy_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


@dataclass(frozen=True)
class PoolPolicy:
    """A pool that keeps its connections, for a process serving many requests at once.

    Exactly `size` connections at most (no overflow: an overflow connection is opened
    and closed per request, which is the churn this avoids), each replaced after
    `recycle_s` so that a connection a firewall or proxy dropped in silence does not
    live on; no ping on checkout: a connection found dead by the first statement of a
    checkout is replaced and that statement sent again (see `create_db_engine`).
    """

    size: int = 16
    recycle_s: float = 1800.0
    #: How long a checkout waits for a free connection before TimeoutError (a 503).
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"a pool needs at least one connection, not {self.size}")


def create_db_engine(url: str, pool: PoolPolicy | None = None, **kwargs: Any) -> Engine:
    """An engine for a PostGIS database at a libpq or SQLAlchemy URL.

    Without `pool`, SQLAlchemy's default pool with a ping on every checkout, for short-
    lived or single-threaded users (the CLI, the consumers). With `pool`, a fixed pool
    as the policy describes, whose dead connections are handled without a ping: the
    first statement of a checkout that finds its connection dead is sent once more on
    a new one (`retry_first_statement`).
    """
    if pool is None:
        return create_engine(sqlalchemy_url(url), pool_pre_ping=True, **kwargs)
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=pool.size,
        max_overflow=0,
        pool_recycle=pool.recycle_s,
        pool_timeout=pool.timeout_s,
        pool_pre_ping=False,
        **kwargs,
    )
    retry_first_statement(engine)
    return engine


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """A session that commits at the end of the block, or rolls back on error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as session:
        yield session


_UNUSED: Final = "wangge.unused_since_checkout"
"""Key in a pool entry's `info`: set at checkout, taken by the checkout's first statement."""

_SESSION_CHARACTERISTICS: Final = ("autocommit", "isolation_level", "read_only", "deferrable")
"""What psycopg keeps client-side for the next transaction, and a new connection must get
from the one it replaces (SQLAlchemy sets them before the first statement)."""


def retry_first_statement(engine: Engine) -> None:
    """Send the first statement of a checkout again, on a new connection, when it finds
    its pooled connection dead (the server restarted, or ended the session).

    SQLAlchemy's optimistic disconnect handling, with a retry where it is always safe:
    nothing has run on the checkout yet, and outside autocommit the statement opened the
    transaction, which a dead connection cannot have committed; so a read or a write is
    sent once, in the same transaction as far as SQLAlchemy and the session know. A
    later statement, or one in autocommit, fails as before: a disconnect error, after
    which the pool replaces its connections.
    """

    @event.listens_for(engine, "checkout")
    def _mark_unused(
        _dbapi_connection: Any, entry: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        entry.info[_UNUSED] = entry

    def run(send: Callable[[DBAPICursor], None], context: ExecutionContext) -> bool:
        proxy = context.root_connection.connection
        # Not a pooled checkout (the dialect's first look at the server): never retried.
        fairy = proxy if isinstance(proxy, _ConnectionFairy) else None
        entry = fairy.info.pop(_UNUSED, None) if fairy is not None else None
        try:
            send(context.cursor)
        except engine.dialect.loaded_dbapi.Error as error:
            if (
                fairy is None
                or entry is None
                or context.execute_style is not ExecuteStyle.EXECUTE
                or getattr(fairy.dbapi_connection, "autocommit", True)
                or not engine.dialect.is_disconnect(error, fairy, context.cursor)
            ):
                raise
            _reconnect(context, fairy, cast(_ConnectionRecord, entry), error)
            send(context.cursor)
        return True  # sent: SQLAlchemy does not send it again itself

    @event.listens_for(engine, "do_execute")
    def _execute(
        cursor: DBAPICursor, statement: str, parameters: Any, context: ExecutionContext
    ) -> bool:
        return run(lambda c: context.dialect.do_execute(c, statement, parameters, context), context)

    @event.listens_for(engine, "do_execute_no_params")
    def _execute_no_params(cursor: DBAPICursor, statement: str, context: ExecutionContext) -> bool:
        return run(lambda c: context.dialect.do_execute_no_params(c, statement, context), context)


def _reconnect(
    context: ExecutionContext,
    proxy: _ConnectionFairy,
    entry: _ConnectionRecord,
    error: Exception,
) -> None:
    """Put a new DBAPI connection under `proxy` in place of its dead one, or raise `error`.

    Beneath SQLAlchemy's Connection, so that its transaction (and a session's) stays as
    it is; the pool entry reconnects as on any checkout (its connect events run). This
    reaches into SQLAlchemy's pool classes (`_ConnectionFairy`, `_ConnectionRecord`); an
    upgrade that changes them fails tests/integration/test_db_pool.py.
    """
    dead = proxy.dbapi_connection
    # What the checkout set up to undo at checkin (its isolation level, say): the
    # invalidation drops it, and it must apply to the new connection instead.
    undo_at_checkin = list(entry.finalize_callback)
    logger.info("a pooled connection was found closed (%s); reconnecting", type(error).__name__)
    entry.invalidate(error)
    try:
        fresh = entry.get_connection()
    except Exception:
        # The database is away: the statement's own error, handled as any disconnect.
        raise error from None
    for name in _SESSION_CHARACTERISTICS:
        setattr(fresh, name, getattr(dead, name))
    entry.finalize_callback.extend(undo_at_checkin)
    proxy.dbapi_connection = fresh
    context.cursor = context.create_cursor()
