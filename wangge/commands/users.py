"""`wangge users`: accounts and their bearer tokens (the work is in `wangge.users_cli`)."""

from typing import Annotated

import typer

from geodata.accounts import Role
from wangge.commands.common import console, fail
from wangge.settings import DatabaseSettings

app = typer.Typer(help="Accounts and their bearer tokens.")


@app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="the account's unique name")],
    role: Annotated[Role, typer.Option(help="what the account may do")],
    area: Annotated[
        str | None,
        typer.Option(help="a supervisor's area: district (6 digits), street (9), community (12)"),
    ] = None,
    worker: Annotated[
        str | None, typer.Option(help="a worker account's worker id, e.g. W00042")
    ] = None,
) -> None:
    """Create an account and print its bearer token alone on the last line."""
    from geodata.errors import WanggeError
    from wangge.users_cli import add_user

    try:
        token = add_user(DatabaseSettings().url, name, role, area, worker)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(f"created the {role} account {name!r}; its token is shown only once:")
    # Plain print: rich might wrap or style the token, and scripts read this line as is.
    print(token)


@app.command("token")
def users_token(name: Annotated[str, typer.Argument(help="the account's name")]) -> None:
    """Issue another bearer token for an account and print it alone on the last line."""
    from geodata.errors import WanggeError
    from wangge.users_cli import issue_token

    try:
        token = issue_token(DatabaseSettings().url, name)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(f"a new token for {name!r} (its other tokens stay valid); shown only once:")
    print(token)


@app.command("revoke")
def users_revoke(name: Annotated[str, typer.Argument(help="the account's name")]) -> None:
    """Revoke every token of an account; a running API refuses them within 5 seconds."""
    from geodata.errors import WanggeError
    from wangge.users_cli import revoke_tokens

    try:
        count = revoke_tokens(DatabaseSettings().url, name)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(f"revoked {count} token(s) of {name!r}")
