"""`wangge db`: database schema migrations."""

from typing import Annotated

import typer

from wangge.commands.common import console
from wangge.settings import DatabaseSettings

app = typer.Typer(help="Database schema migrations.")


@app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the database to the current schema (Alembic)."""
    from geodata.db import migrate

    settings = DatabaseSettings()
    migrate.upgrade(settings.url, revision)
    console.print(f"database at revision [bold]{revision}[/]")


@app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()] = "base") -> None:
    """Migrate the database down (to `base` by default: drops every wangge table)."""
    from geodata.db import migrate

    migrate.downgrade(DatabaseSettings().url, revision)
    console.print(f"database at revision [bold]{revision}[/]")


@app.command("current")
def db_current() -> None:
    """Print the database's schema revision and the code's."""
    from geodata.db import migrate
    from geodata.db.engine import create_db_engine

    engine = create_db_engine(DatabaseSettings().url)
    current = migrate.current_revision(engine)
    console.print(f"database: {current or 'no schema'}; code: {migrate.head_revision()}")
