"""`wangge users`: accounts, their bearer tokens and passwords, a city's accounts at once
(the work is in `wangge.users_cli`)."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from geodata.accounts import Role
from wangge.commands.common import console, err_console, fail, progress_bar
from wangge.settings import DatabaseSettings

if TYPE_CHECKING:
    from geodata.account_import import AccountImportRefused

app = typer.Typer(help="Accounts, their bearer tokens and passwords.")


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


@app.command("import")
def users_import(
    accounts_csv: Annotated[
        Path, typer.Argument(help="CSV with the header name,role,area,worker", exists=True)
    ],
    passwords: Annotated[
        Path | None,
        typer.Option(help="where the one-time passwords go (default: FILE.passwords.csv)"),
    ] = None,
) -> None:
    """Create a city's accounts with one-time passwords, all or nothing.

    The passwords go to a new file readable by you only, never to the console: hand each
    person their line; each must choose their own password at the first sign-in.
    Accounts already there as the file describes are left as they are.
    """
    from geodata.account_import import AccountImportRefused
    from geodata.errors import WanggeError
    from wangge.users_cli import default_passwords_path, import_users

    target = passwords or default_passwords_path(accounts_csv)
    try:
        with progress_bar() as progress:
            report = import_users(DatabaseSettings().url, accounts_csv, target, progress)
    except AccountImportRefused as exc:
        _print_problems(exc)
        raise fail(f"{accounts_csv}: {exc}") from exc
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"created {report.created:,} account(s); {report.unchanged:,} already there"
        " as the file describes, left as they are"
    )
    if report.passwords_file is not None:
        console.print(
            f"their one-time passwords: {report.passwords_file} (readable by you only); hand"
            " each person their line: the password must be changed at the first sign-in"
        )


def _print_problems(refusal: "AccountImportRefused", shown: int = 50) -> None:
    table = Table("line", "name", "problem", title="nothing was imported")
    for problem in refusal.problems[:shown]:
        table.add_row(str(problem.line), problem.name, problem.reason)
    err_console.print(table)
    if len(refusal.problems) > shown:
        err_console.print(f"… and {len(refusal.problems) - shown} more")


@app.command("template")
def users_template(
    out: Annotated[Path, typer.Option(help="the CSV to write (never overwritten)")],
) -> None:
    """Write an import file of the loaded city: a supervisor for each district, street and
    community (sup-CODE) and an account for each worker (named by its id)."""
    from geodata.errors import WanggeError
    from wangge.users_cli import write_template

    try:
        supervisors, workers = write_template(DatabaseSettings().url, out)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"wrote {out}: {supervisors:,} supervisors and {workers:,} workers;"
        f" edit it, then `wangge users import {out}`"
    )


@app.command("list")
def users_list(
    role: Annotated[Role | None, typer.Option(help="only this role's accounts")] = None,
    area: Annotated[
        str | None, typer.Option(help="only accounts under this area code (workers by grid)")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many rows")] = None,
) -> None:
    """The accounts by name: role, scope, password state, lock, live tokens and sessions."""
    from geodata.errors import WanggeError
    from wangge.users_cli import list_users

    try:
        accounts, total = list_users(DatabaseSettings().url, role, area, limit)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    table = Table(
        "name", "role", "area", "worker", "password", "locked until", "tokens", "sessions"
    )
    for account in accounts:
        locked = "" if account.locked_until is None else f"{account.locked_until:%Y-%m-%d %H:%M}"
        table.add_row(
            account.name,
            account.role.value,
            account.area_prefix or "",
            account.worker_id or "",
            account.password,
            locked,
            str(account.live_tokens),
            str(account.live_sessions),
        )
    console.print(table)
    console.print(f"{len(accounts):,} of {total:,} account(s)")


@app.command("reset-password")
def users_reset_password(name: Annotated[str, typer.Argument(help="the account's name")]) -> None:
    """Give an account a new one-time password (printed alone on the last line); its
    sessions end, a lock is lifted, and the password must be changed at the next sign-in."""
    from geodata.errors import WanggeError
    from wangge.users_cli import reset_password

    try:
        password = reset_password(DatabaseSettings().url, name)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(f"a one-time password for {name!r}, shown only once; to be changed at sign-in:")
    print(password)
