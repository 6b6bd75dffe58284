"""People's sign-in on the real app and PostGIS: sessions, expiry, lock-out, rate limit,
password changes, CSRF, and no hash or session id ever in a body.

Each test has an app of its own on a fresh copy of the reference city, with a clock it
moves (grid_service.auth's `now`), so expiry and lock-out are shown without waiting.
"""

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Client, Response
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from geodata.db.engine import create_db_engine
from geodata.passwords import SignInPolicy, hash_session_id
from grid_service.app import ApiConfig, create_app
from grid_service.auth import AuthConfig, install_auth
from grid_service.session_cookie import COOKIE_NAME
from tests.integration.session_support import (
    FETCH,
    Clock,
    give_passwords,
    password_of,
    session_cookie,
    sign_in,
    use_session,
)
from tests.integration.test_auth import City, bearer, make_accounts, pick_city
from wangge.users_cli import add_user, reset_password

pytestmark = pytest.mark.integration

WEEK = "2020-W37"
AS_OF = "2020-09-10T12:00:00+08:00"
CALLERS = ("worker-a", "worker-b", "sup-x", "sup-y", "sup-c", "admin")
RELAXED = AuthConfig(sign_in_rate_per_s=100, sign_in_burst=100)
"""The defaults, but for the sign-in rate, which only its own test spends."""


@dataclass
class Env:
    """An app with its clock, a city, its accounts (with passwords) and every JSON answer."""

    client: Client  # a TestClient, typed as the httpx client it is
    database_url: str
    city: City
    tokens: dict[str, str]
    clock: Clock
    bodies: list[str] = field(default_factory=list)

    def seen(self, response: Response) -> Response:
        """Keep a JSON answer's text for the scan for secrets; the response as is."""
        if response.headers.get("content-type", "").startswith("application/json"):
            self.bodies.append(response.text)
        return response

    def sign_in(self, name: str, password: str | None = None) -> Response:
        """POST /api/v1/session as the pages do."""
        return self.seen(sign_in(self.client, name, password))

    def me(self, **headers: str) -> Response:
        """GET /api/v1/session."""
        return self.seen(self.client.get("/api/v1/session", headers=headers))

    def change(self, **payload: str) -> Response:
        """POST /api/v1/session/password."""
        return self.seen(self.client.post("/api/v1/session/password", json=payload, headers=FETCH))

    def compliance(self) -> Response:
        """A read that needs a caller: the week's compliance of the caller's area."""
        return self.seen(
            self.client.get("/api/v1/compliance", params={"week": WEEK, "as_of": AS_OF})
        )


@pytest.fixture
def env_factory(reference_database_factory: Callable[[], str]) -> Iterator[Callable[..., Env]]:
    """Factory: an app with the given AuthConfig on a fresh city, every account a password."""
    with contextlib.ExitStack() as clients:

        def make(config: AuthConfig = RELAXED, address: str = "testclient") -> Env:
            database_url = reference_database_factory()
            engine = create_db_engine(database_url)
            try:
                city = pick_city(engine)
            finally:
                engine.dispose()
            tokens = make_accounts(database_url, city)
            give_passwords(database_url, CALLERS)
            clock = Clock()
            app = create_app(ApiConfig(database_url, "127.0.0.1:9"))  # no broker needed
            install_auth(app, config, now=clock)
            client = clients.enter_context(TestClient(app, client=(address, 50000)))
            return Env(client, database_url, city, tokens, clock)

        yield make


def _set_cookie(response: Response) -> str:
    (cookie,) = [c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE_NAME)]
    return cookie


def _attributes(cookie: str) -> dict[str, str]:
    parts = [part.strip() for part in cookie.split(";")[1:]]
    return {key.lower(): value for key, _, value in (part.partition("=") for part in parts)}


def _code(response: Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


# --------------------------------------------------------------------------- sessions


def test_a_sign_in_sets_an_httponly_strict_cookie_that_reads_as_the_account(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    signed_in = env.sign_in("sup-x")
    assert signed_in.status_code == 200, signed_in.text
    attributes = _attributes(_set_cookie(signed_in))
    assert {"httponly", "path", "samesite", "max-age"} <= set(attributes)
    assert attributes["samesite"].lower() == "strict"
    assert attributes["path"] == "/"
    assert attributes["max-age"] == str(12 * 3600)
    assert "secure" not in attributes  # plain http on this machine: a browser would drop it
    assert signed_in.headers["Cache-Control"] == "no-store"
    me = signed_in.json()
    assert me == {
        "name": "sup-x",
        "role": "supervisor",
        "area_prefix": env.city.district_x,
        "area_name": me["area_name"],
        "worker_id": None,
        "worker_name": None,
        "via": "session",
        "expires_at": me["expires_at"],
    }
    assert me["area_name"]
    assert env.me().json() == me
    # The session reads what the supervisor's token reads, no more.
    by_session = env.compliance()
    assert by_session.status_code == 200, by_session.text
    use_session(env.client, None)
    by_token = env.client.get(
        "/api/v1/compliance",
        params={"week": WEEK, "as_of": AS_OF},
        headers=bearer(env.tokens["sup_x"]),
    )
    assert by_session.json() == by_token.json()


def test_over_https_the_cookie_is_secure(env_factory: Callable[..., Env]) -> None:
    env = env_factory()
    env.client.base_url = env.client.base_url.copy_with(scheme="https")
    assert "secure" in _attributes(_set_cookie(env.sign_in("worker-a")))


def test_a_setting_makes_the_cookie_secure_over_http_too(env_factory: Callable[..., Env]) -> None:
    env = env_factory(replace(RELAXED, session_cookie_secure=True))
    assert "secure" in _attributes(_set_cookie(env.sign_in("worker-a")))


def test_a_token_still_works_and_says_so(env_factory: Callable[..., Env]) -> None:
    env = env_factory()
    me = env.me(**bearer(env.tokens["worker_a"])).json()
    assert (me["name"], me["via"], me["expires_at"]) == ("worker-a", "token", None)
    assert (me["worker_id"], bool(me["worker_name"])) == (env.city.worker_a, True)
    # With both, the token is the caller.
    env.sign_in("sup-x")
    assert env.me(**bearer(env.tokens["worker_a"])).json()["name"] == "worker-a"


def test_sign_out_ends_the_session_on_the_server_not_only_in_the_browser(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    session_id = session_cookie(env.sign_in("sup-x"))
    refused = env.client.delete("/api/v1/session")
    assert _code(refused) == (403, "fetch_header_missing")
    signed_out = env.client.delete("/api/v1/session", headers=FETCH)
    assert signed_out.status_code == 204
    assert _attributes(_set_cookie(signed_out))["max-age"] == "0"
    # The cookie kept by someone (replayed) no longer speaks for anyone.
    use_session(env.client, session_id)
    assert _code(env.me()) == (401, "session_expired")
    assert _code(env.compliance()) == (401, "session_expired")
    # Public reads answer a stale cookie as anyone: the map's tiles carry it.
    assert env.client.get(f"/api/v1/grids/{env.city.grid_a}").status_code == 200
    assert env.client.delete("/api/v1/session", headers=FETCH).status_code == 204  # again: ok
    use_session(env.client, None)
    assert _code(env.me()) == (401, "missing_token")


def test_a_session_expires_at_its_lifetime(env_factory: Callable[..., Env]) -> None:
    env = env_factory(replace(RELAXED, sign_in=SignInPolicy(session_lifetime=timedelta(hours=2))))
    signed_in = env.sign_in("sup-x")
    assert _attributes(_set_cookie(signed_in))["max-age"] == "7200"
    env.clock.advance(timedelta(hours=2) - timedelta(seconds=1))
    assert env.compliance().status_code == 200
    env.clock.advance(timedelta(seconds=1))
    assert _code(env.compliance()) == (401, "session_expired")
    assert _code(env.me()) == (401, "session_expired")
    # A new sign-in starts a new session.
    env.sign_in("sup-x")
    assert env.compliance().status_code == 200


def test_a_garbled_cookie_is_no_one(env_factory: Callable[..., Env]) -> None:
    env = env_factory()
    for value in ("x", "ws_" + "A" * 43, "wg_" + "A" * 43):
        use_session(env.client, value)
        assert _code(env.me()) == (401, "session_expired"), value


# --------------------------------------------------------------------------- failures


def test_an_unknown_name_and_a_wrong_password_answer_alike(env_factory: Callable[..., Env]) -> None:
    env = env_factory()
    add_user(env.database_url, "a-machine", "admin", None, None)  # tokens only, no password
    wrong = env.sign_in("sup-x", "not-the-password-1")
    unknown = env.sign_in("nobody-at-all", "not-the-password-1")
    token_only = env.sign_in("a-machine", "not-the-password-1")
    too_long = env.sign_in("n" * 65, "not-the-password-1")  # longer than any name may be
    for response in (wrong, unknown, token_only, too_long):
        assert response.json() == {
            "code": "invalid_credentials",
            "detail": "the name or the password is wrong",
        }
        assert response.status_code == 401
        assert COOKIE_NAME not in response.headers.get("set-cookie", "")


def test_repeated_failures_lock_a_name_whether_or_not_it_exists(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    answers: dict[str, list[Response]] = {"sup-x": [], "no-such-person": []}
    for name, responses in answers.items():
        for _ in range(6):
            responses.append(env.sign_in(name, "guess-number-one"))
    for responses in answers.values():
        assert [r.status_code for r in responses] == [401, 401, 401, 401, 429, 429]
    locked_known, locked_unknown = answers["sup-x"][-1], answers["no-such-person"][-1]
    assert locked_known.json() == locked_unknown.json()
    assert locked_known.json()["code"] == "account_locked"
    assert locked_known.headers["Retry-After"] == locked_unknown.headers["Retry-After"] == "900"
    # Locked, the right password is refused too, until the lock ends.
    assert _code(env.sign_in("sup-x")) == (429, "account_locked")
    env.clock.advance(timedelta(minutes=15))
    assert env.sign_in("sup-x").status_code == 200
    # Success clears the run: four more failures do not lock.
    for _ in range(4):
        assert env.sign_in("sup-x", "guess-number-two").status_code == 401
    assert env.sign_in("sup-x").status_code == 200


def test_failures_far_apart_never_add_up_to_a_lock(env_factory: Callable[..., Env]) -> None:
    env = env_factory()
    for _ in range(8):
        assert env.sign_in("sup-y", "a-typo-now-and-then").status_code == 401
        env.clock.advance(timedelta(minutes=16))
    assert env.sign_in("sup-y").status_code == 200


def test_sign_in_is_rate_limited_per_client_address(env_factory: Callable[..., Env]) -> None:
    env = env_factory(AuthConfig(sign_in_rate_per_s=0.05, sign_in_burst=3))
    answers = [env.sign_in(name) for name in ("worker-a", "worker-b", "sup-c", "sup-y")]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert _code(answers[-1]) == (429, "rate_limited")
    assert 10 <= int(answers[-1].headers["Retry-After"]) <= 20  # a request every 20 s
    assert "address" in answers[-1].json()["detail"]
    changed = env.change(username="admin", password=password_of("admin"), new_password="x" * 12)
    assert _code(changed) == (429, "rate_limited")  # password changes spend the same allowance
    # Another address has its own allowance (a second client on the same app).
    other = TestClient(env.client.app, client=("192.0.2.7", 50000))  # type: ignore[attr-defined]
    assert sign_in(other, "sup-y").status_code == 200


def test_sign_in_needs_the_fetch_header(env_factory: Callable[..., Env]) -> None:
    env = env_factory()
    forged = env.client.post(
        "/api/v1/session", json={"username": "sup-x", "password": password_of("sup-x")}
    )
    assert _code(forged) == (403, "fetch_header_missing")
    assert COOKIE_NAME not in forged.headers.get("set-cookie", "")


def test_a_cookie_write_needs_the_fetch_header_a_token_write_does_not(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    env.sign_in("sup-x")
    unknown = "/api/v1/incidents/00000000-0000-4000-8000-000000000000"
    move = {"action": "close"}
    forged = env.client.patch(unknown, json=move, headers={"If-Match": '"1"'})
    assert _code(forged) == (403, "fetch_header_missing")
    fetched = env.client.patch(unknown, json=move, headers={"If-Match": '"1"', **FETCH})
    assert _code(fetched) == (404, "incident_not_found")  # past the guard, to the route
    use_session(env.client, None)
    by_token = env.client.patch(
        unknown, json=move, headers={"If-Match": '"1"', **bearer(env.tokens["sup_x"])}
    )
    assert _code(by_token) == (404, "incident_not_found")


# --------------------------------------------------------------------------- passwords


def test_a_password_change_ends_the_other_sessions_and_needs_the_current_password(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    old_session = session_cookie(env.sign_in("sup-c"))
    old = password_of("sup-c")
    new = "Another-long-passphrase-7"
    wrong = env.change(password="not-my-password-1", new_password=new)
    assert _code(wrong) == (401, "invalid_credentials")
    changed = env.change(password=old, new_password=new)
    assert changed.status_code == 200, changed.text
    new_session = session_cookie(changed)
    assert new_session != old_session
    use_session(env.client, old_session)
    assert _code(env.compliance()) == (401, "session_expired")
    use_session(env.client, new_session)
    assert env.compliance().status_code == 200
    use_session(env.client, None)
    assert _code(env.sign_in("sup-c", old)) == (401, "invalid_credentials")
    assert env.sign_in("sup-c", new).status_code == 200


@pytest.mark.parametrize(
    ("new_password", "why"),
    [
        ("short-1", "at least 10"),
        ("x" * 129, "at most 128"),
        ("password123", "first any guesser"),
        ("aaaaaaaaaaaaaa", "first any guesser"),
        ("my-name-is-sup-c!", "name"),
        ("same", "replaces"),
    ],
)
def test_the_password_rule_refuses_weak_passwords(
    env_factory: Callable[..., Env], new_password: str, why: str
) -> None:
    env = env_factory()
    old = password_of("sup-c")
    refused = env.change(
        username="sup-c", password=old, new_password=old if new_password == "same" else new_password
    )
    assert _code(refused) == (422, "weak_password")
    assert why in refused.json()["detail"]
    assert env.sign_in("sup-c", old).status_code == 200  # unchanged


def test_a_one_time_password_signs_in_nobody_until_it_is_changed(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    one_time = reset_password(env.database_url, "worker-b")
    refused = env.sign_in("worker-b", one_time)
    assert _code(refused) == (403, "password_change_required")
    assert COOKIE_NAME not in refused.headers.get("set-cookie", "")
    assert _code(env.me()) == (401, "missing_token")
    # The old password went with the reset.
    assert _code(env.sign_in("worker-b")) == (401, "invalid_credentials")
    mine = "Walking-the-grid-every-day"
    changed = env.change(username="worker-b", password=one_time, new_password=mine)
    assert changed.status_code == 200, changed.text
    assert env.me().json()["worker_id"] == env.city.worker_b
    use_session(env.client, None)
    assert _code(env.sign_in("worker-b", one_time)) == (401, "invalid_credentials")
    assert env.sign_in("worker-b", mine).status_code == 200


def test_a_reset_ends_sessions_and_lifts_a_lock(env_factory: Callable[..., Env]) -> None:
    env = env_factory(replace(RELAXED, token_cache_ttl_s=0))
    session_id = session_cookie(env.sign_in("sup-y"))
    use_session(env.client, None)
    for _ in range(5):
        env.sign_in("sup-y", "wrong-guess-again")
    assert _code(env.sign_in("sup-y")) == (429, "account_locked")
    one_time = reset_password(env.database_url, "sup-y")
    use_session(env.client, session_id)
    assert _code(env.compliance()) == (401, "session_expired")
    use_session(env.client, None)
    assert _code(env.sign_in("sup-y", one_time)) == (403, "password_change_required")


# --------------------------------------------------------------------------- secrets


def test_no_hash_session_id_or_password_in_any_answer_nor_in_the_database(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    session_ids = [session_cookie(env.sign_in(name)) for name in CALLERS]
    env.me()
    env.change(password=password_of("admin"), new_password="Admin-chooses-this-one")
    session_ids.append(env.client.cookies[COOKIE_NAME])
    env.sign_in("sup-x", "wrong-password-here")
    reset_password(env.database_url, "worker-a")
    env.sign_in("worker-a", "whatever-it-is-now")
    for caller in ("admin", "sup_x", "worker_a"):
        env.seen(env.client.get("/api/v1/users", headers=bearer(env.tokens[caller])))
        env.seen(env.client.get("/api/v1/users", params={"role": "worker", "area": "610302"}))
    listing = env.seen(env.client.get("/api/v1/users", headers=bearer(env.tokens["admin"])))
    assert listing.status_code == 200
    engine = create_db_engine(env.database_url)
    try:
        with engine.connect() as connection:
            hashes = (
                connection.execute(
                    text("SELECT password_hash FROM accounts WHERE password_hash IS NOT NULL")
                )
                .scalars()
                .all()
            )
            stored_sessions = (
                connection.execute(text("SELECT session_hash FROM account_sessions"))
                .scalars()
                .all()
            )
            everything = (
                connection.execute(
                    text(
                        "SELECT string_agg(row_to_json(s)::text, ' ') FROM account_sessions s"
                        " UNION ALL SELECT string_agg(row_to_json(a)::text, ' ') FROM accounts a"
                    )
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    assert len(hashes) == len(CALLERS)
    assert all(h.startswith("$argon2id$") for h in hashes)
    answers = " ".join(env.bodies)
    assert len(env.bodies) == 17  # every answer above, so the scan is not of nothing
    for secret in [*hashes, "$argon2", *session_ids, *map(password_of, CALLERS)]:
        assert secret not in answers
    for secret in [*hashes, *(h.split("$")[-1] for h in hashes)]:
        assert secret not in answers
    stored = " ".join(filter(None, everything))
    for session_id in session_ids:
        assert session_id not in stored
        assert session_id[3:] not in stored
    assert {hash_session_id(s) for s in session_ids} <= set(stored_sessions)
    # Every key of the listing is one an admin may see.
    items = listing.json()["items"]
    assert len(items) == len(CALLERS)
    assert set(items[0]) == {
        "name", "role", "area_prefix", "worker_id", "password", "locked_until",
        "live_tokens", "live_sessions", "created_at",
    }  # fmt: skip
    by_name = {item["name"]: item for item in items}
    assert by_name["worker-a"]["password"] == "one-time"
    assert by_name["admin"]["live_sessions"] == 1  # the change ended the first
    assert by_name["sup-x"]["live_tokens"] == 1


def test_the_users_listing_is_for_admins_only(env_factory: Callable[..., Env]) -> None:
    env = env_factory()
    assert _code(env.client.get("/api/v1/users")) == (401, "missing_token")
    for caller in ("sup_x", "worker_a"):
        response = env.client.get("/api/v1/users", headers=bearer(env.tokens[caller]))
        assert _code(response) == (403, "forbidden")
    env.sign_in("sup-x")
    assert _code(env.client.get("/api/v1/users")) == (403, "forbidden")
    env.sign_in("admin")
    scoped = env.client.get("/api/v1/users", params={"area": env.city.community_c})
    names = {item["name"] for item in scoped.json()["items"]}
    assert names == {"sup-c", "worker-a"}  # worker A's grid is in C
    assert scoped.headers["Cache-Control"] == "no-store"


def test_the_database_refuses_a_password_that_is_not_an_argon2id_hash(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    engine = create_db_engine(env.database_url)
    try:
        with pytest.raises(IntegrityError, match="argon2_hash"), engine.begin() as connection:
            connection.execute(
                text("UPDATE accounts SET password_hash = 'hunter2' WHERE name = 'admin'")
            )
    finally:
        engine.dispose()


def test_a_name_or_password_no_database_can_hold_is_a_422(env_factory: Callable[..., Env]) -> None:
    env = env_factory()
    for body in (
        b'{"username": "sup-\\ud800", "password": "whatever-it-is"}',  # a lone surrogate
        b'{"username": "sup-x", "password": "pass\\u0000word-long"}',
    ):
        response = env.client.post(
            "/api/v1/session",
            content=body,
            headers={**FETCH, "Content-Type": "application/json"},
        )
        assert _code(response) == (422, "invalid_request"), response.text


def test_sessions_and_failures_are_pruned_a_month_after_they_end(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    env.sign_in("sup-x")
    env.sign_in("someone-unknown", "a-wrong-password")

    def counts() -> tuple[int, int]:
        engine = create_db_engine(env.database_url)
        try:
            with engine.connect() as connection:
                sessions = connection.execute(text("SELECT count(*) FROM account_sessions"))
                failures = connection.execute(text("SELECT count(*) FROM sign_in_failures"))
                return int(sessions.scalar_one()), int(failures.scalar_one())
        finally:
            engine.dispose()

    assert counts() == (1, 1)
    env.clock.advance(timedelta(days=30))
    env.sign_in("sup-y")  # the first session expired 30 days less 12 hours ago: kept
    assert counts() == (2, 1)
    env.clock.advance(timedelta(hours=12, seconds=1))
    env.sign_in("sup-c")
    assert counts() == (2, 0)  # sup-x's session and the month-old failure are gone
