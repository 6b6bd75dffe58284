"""Helpers of the session tests: passwords given to accounts, sign-in through the API."""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import Client, Response

from geodata.db import accounts_store
from geodata.db.engine import create_db_engine, unit_of_work
from geodata.db.sign_in import set_password
from geodata.passwords import hash_password
from grid_service.session_cookie import COOKIE_NAME

FETCH = {"X-Requested-With": "wangge"}
"""The header the pages send with every sign-in and cookie-authenticated write."""


class Clock:
    """A wall clock the test moves: the app's sessions and lock-outs run by it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        self.now += delta


def password_of(name: str) -> str:
    """The password the tests give account `name`: long, not common, without the name."""
    return f"Horse-{sum(map(ord, name)) % 997:03d}-battery-staple"


def give_passwords(database_url: str, names: Iterable[str]) -> None:
    """Give each named account its `password_of` as a chosen (not one-time) password."""
    engine = create_db_engine(database_url)
    try:
        with unit_of_work(engine) as session:
            for name in names:
                account = accounts_store.account_id(session, name)
                set_password(
                    session,
                    account,
                    hash_password(password_of(name)),
                    one_time=False,
                    now=datetime.now(UTC),
                )
    finally:
        engine.dispose()


def sign_in(client: Client, name: str, password: str | None = None) -> Response:
    """POST /api/v1/session as the pages do."""
    response: Response = client.post(
        "/api/v1/session",
        json={"username": name, "password": password or password_of(name)},
        headers=FETCH,
    )
    return response


def session_cookie(response: Response) -> str:
    """The session id a sign-in's Set-Cookie carries."""
    value = response.cookies.get(COOKIE_NAME)
    assert value, response.headers.get_list("set-cookie")
    return value


def use_session(client: Client, session_id: str | None) -> None:
    """Make `client` send this session's cookie from now on (None: no cookie)."""
    client.cookies.clear()
    if session_id is not None:
        client.cookies.set(COOKIE_NAME, session_id)


def sign_in_on_map(page: Any, name: str, password: str) -> None:
    """Sign in on the map's form as a person does: the dialog, the name, the password."""
    page.wait_for_selector("#login[open] #username", timeout=20_000)
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login-submit")
