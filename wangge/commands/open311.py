"""`wangge open311 keys`: the api keys of the programs that post residents' Open311 requests."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from wangge.commands.common import console, fail
from wangge.settings import DatabaseSettings

if TYPE_CHECKING:
    from sqlalchemy import Connection

app = typer.Typer(help="Open311 GeoReport v2: the clients that post residents' requests.")
keys = typer.Typer(help="Api keys of Open311 clients (one per client, stored hashed).")
app.add_typer(keys, name="keys")


@keys.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="the client's unique name, e.g. the app's")],
) -> None:
    """Register a client and print its api key alone on the last line (shown only once)."""
    from geodata.db import open311_store
    from geodata.errors import WanggeError

    try:
        with _connection() as conn:
            key = open311_store.add_client(conn, name)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(f"registered the Open311 client {name.strip()!r}; its api key is shown once:")
    # Plain print: rich might wrap or style the key, and scripts read this line as is.
    print(key)


@keys.command("list")
def keys_list() -> None:
    """Every client: when registered, whether revoked, and how many requests it posted."""
    from geodata.db import open311_store
    from geodata.errors import WanggeError

    try:
        with _connection() as conn:
            clients = open311_store.list_clients(conn)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    table = Table("client", "registered", "revoked", "requests")
    for client in clients:
        revoked = client.revoked_at.isoformat(timespec="seconds") if client.revoked_at else ""
        table.add_row(
            client.name,
            client.created_at.isoformat(timespec="seconds"),
            revoked,
            str(client.requests),
        )
    console.print(table)


@keys.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="the client's name")]) -> None:
    """Revoke a client's api key: its next post is refused (403); its requests stay."""
    from geodata.db import open311_store
    from geodata.errors import WanggeError

    try:
        with _connection() as conn:
            was_live = open311_store.revoke_client(conn, name)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"revoked the api key of {name!r}" if was_live else f"{name!r} was revoked already"
    )


@contextmanager
def _connection() -> Iterator["Connection"]:
    """A transaction on the configured database at the current schema, committed on exit."""
    from geodata.db import migrate
    from geodata.db.engine import create_db_engine

    engine = create_db_engine(DatabaseSettings().url)
    try:
        migrate.require_current_schema(engine)
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()
