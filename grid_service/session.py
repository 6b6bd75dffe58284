"""People's sign-in: `/api/v1/session` (sign in, who am I, sign out) and its password change.

A person signs in with a name and a password and gets the session cookie
(grid_service/session_cookie.py), which the pages' own fetches then carry by themselves;
machines keep their bearer tokens. Neither a password hash nor a session id ever appears
in a body: the id travels in the HttpOnly cookie only.

Failures say as little as they can: an unknown name and a wrong password are the same
401 `invalid_credentials`; a name locked after `max_failures` failures in a row is 429
`account_locked` with Retry-After, whether or not an account has it; sign-in and password
changes are limited per client address (429 `rate_limited`). A one-time password (from
`wangge users import` or `users reset-password`) signs in nobody: the answer is 403
`password_change_required`, and POST /api/v1/session/password with the name, the
one-time password and a new one signs in.
"""

from datetime import datetime
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from geodata.accounts import MAX_NAME_LENGTH, Principal, Role
from geodata.db import accounts_store
from geodata.db.engine import unit_of_work
from geodata.db.sign_in import Outcome, SignInResult, StartedSession, end_session, sign_in
from geodata.passwords import (
    MAX_PASSWORD_LENGTH,
    InvalidCredentials,
    PasswordChangeRequired,
    hash_session_id,
    is_well_formed_session_id,
)
from grid_service.auth import (
    AuthState,
    OptionalPrincipal,
    RequiredPrincipal,
    auth_state,
    current_session,
)
from grid_service.deps import EngineDep, StoredText
from grid_service.errors import ErrorBody, RateLimited
from grid_service.routing import add_routes
from grid_service.session_cookie import (
    clear_session_cookie,
    remaining_s,
    require_fetch_header,
    session_id_of,
    set_session_cookie,
)
from grid_service.users import router as users_router

router = APIRouter(prefix="/api/v1/session", tags=["session"])

NO_STORE: Final = {"Cache-Control": "no-store"}

# Long enough for any name or password the rules allow, short enough to refuse junk early.
_NAME_FIELD = Field(min_length=1, max_length=4 * MAX_NAME_LENGTH)
_PASSWORD_FIELD = Field(min_length=1, max_length=4 * MAX_PASSWORD_LENGTH)


def _utf8(value: str) -> str:
    # JSON may spell a lone surrogate (\ud800), which neither argon2 nor PostgreSQL takes.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be UTF-8 (no lone surrogate)") from None
    return value


SignInText = Annotated[StoredText, AfterValidator(_utf8)]
"""A name or password of a request: no NUL, no lone surrogate."""


class AccountLocked(RateLimited):
    """Too many failed sign-ins in a row for this name: refused until the lock ends."""

    code = "account_locked"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(retry_after_s)
        wait = f"{retry_after_s:.0f} s" if retry_after_s < 120 else f"{retry_after_s / 60:.0f} min"
        self.args = (f"too many failed sign-ins for this name; try again in {wait}",)


class SignInRateLimited(RateLimited):
    """Too many sign-in attempts from one client address."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(retry_after_s)
        wait = f"{max(1.0, retry_after_s):.0f} s"
        self.args = (f"too many sign-in attempts from this address; retry in {wait}",)


class SignIn(BaseModel):
    """A name and a password."""

    username: Annotated[SignInText, _NAME_FIELD]
    password: Annotated[SignInText, _PASSWORD_FIELD]


class PasswordChange(BaseModel):
    """The current password and a new one; the name too unless signed in already."""

    username: Annotated[SignInText, _NAME_FIELD] | None = Field(
        default=None, description="needed when not signed in (a one-time password's change)"
    )
    password: Annotated[SignInText, _PASSWORD_FIELD] = Field(description="the current one")
    new_password: Annotated[SignInText, _PASSWORD_FIELD]


class SessionPublic(BaseModel):
    """Who the caller is: the account's name, role and scope; never a secret or a hash."""

    name: str
    role: Role
    area_prefix: str | None = Field(description="a supervisor's area code")
    area_name: str | None
    worker_id: str | None = Field(description="a worker account's worker")
    worker_name: str | None
    via: Literal["session", "token"] = Field(description="a password session or a bearer token")
    expires_at: datetime | None = Field(description="when the session ends (tokens: null)")


_SIGN_IN_ERRORS: Final[dict[int | str, dict[str, object]]] = {
    400: {"model": ErrorBody, "description": "`bad_request`: the body is not JSON."},
    401: {"model": ErrorBody, "description": "`invalid_credentials`: name or password wrong."},
    403: {
        "model": ErrorBody,
        "description": "`password_change_required` (a one-time password: change it with"
        " POST /api/v1/session/password); `fetch_header_missing` without X-Requested-With.",
    },
    422: {"model": ErrorBody, "description": "`invalid_request`; `weak_password`."},
    429: {
        "model": ErrorBody,
        "description": "`account_locked` (too many failures for the name) or `rate_limited`"
        " (too many attempts from this address), with Retry-After.",
    },
}


def _spend_attempt(request: Request, auth: AuthState) -> None:
    client = request.client.host if request.client else "unknown"
    try:
        auth.sign_in_limiter.take(("sign-in", client))
    except RateLimited as exc:
        raise SignInRateLimited(exc.retry_after_s) from None


def _public(engine: Engine, principal: Principal, expires_at: datetime | None) -> SessionPublic:
    with Session(engine) as session:
        holder = accounts_store.holder_of(session, principal.worker_id, principal.area_prefix)
    return SessionPublic(
        name=principal.name,
        role=principal.role,
        area_prefix=principal.area_prefix,
        area_name=holder.area_name,
        worker_id=principal.worker_id,
        worker_name=holder.worker_name,
        via="session" if principal.via_session else "token",
        expires_at=expires_at,
    )


def _answer(
    result: SignInResult, request: Request, response: Response, engine: Engine, auth: AuthState
) -> SessionPublic:
    """The session just started, with its cookie; or the refusal the outcome stands for."""
    if result.outcome is Outcome.LOCKED:
        assert result.locked_until is not None
        raise AccountLocked((result.locked_until - auth.now()).total_seconds())
    if result.outcome is Outcome.CHANGE_REQUIRED:
        raise PasswordChangeRequired(
            "this is a one-time password: choose your own with POST /api/v1/session/password"
        )
    if result.outcome is Outcome.INVALID or result.session is None:
        raise InvalidCredentials("the name or the password is wrong")
    started: StartedSession = result.session
    set_session_cookie(
        response,
        request,
        started.session_id,
        max_age_s=remaining_s(started.expires_at, auth.now()),
        secure_always=auth.config.session_cookie_secure,
    )
    response.headers.update(NO_STORE)
    return _public(engine, started.principal, started.expires_at)


@router.post(
    "",
    response_model=SessionPublic,
    responses=_SIGN_IN_ERRORS,
    dependencies=[Depends(require_fetch_header)],
)
def start_session(
    body: SignIn, request: Request, response: Response, engine: EngineDep
) -> SessionPublic:
    """Sign in with a name and a password: the session cookie (HttpOnly, SameSite=Strict)
    and who is signed in. Send `X-Requested-With` (any value)."""
    auth = auth_state(request)
    _spend_attempt(request, auth)
    result = sign_in(engine, body.username, body.password, auth.now(), auth.config.sign_in)
    return _answer(result, request, response, engine, auth)


@router.post(
    "/password",
    response_model=SessionPublic,
    responses=_SIGN_IN_ERRORS,
    dependencies=[Depends(require_fetch_header)],
)
def change_password(
    body: PasswordChange,
    request: Request,
    response: Response,
    engine: EngineDep,
    caller: OptionalPrincipal,
) -> SessionPublic:
    """Change a password (the current one and a new one) and sign in anew: every other
    session of the account ends. Signed in, the name may be left out; a one-time password
    is changed this way, with the name. The new password: at least the configured length
    (10 by default), not a well-known one, not containing the name, not the current one
    (422 `weak_password`). Send `X-Requested-With`."""
    auth = auth_state(request)
    _spend_attempt(request, auth)
    # With a name, it is a sign-in that sets a new password, whoever the cookie was.
    username = body.username
    if username is None:
        if caller is None:
            raise InvalidCredentials("give the username, or sign in first")
        username = caller.name
    result = sign_in(
        engine,
        username,
        body.password,
        auth.now(),
        auth.config.sign_in,
        new_password=body.new_password,
    )
    if result.session is not None:
        # The account's other sessions ended: none may live on in this process's memory.
        auth.sessions.drop_account(result.session.principal.account_id)
    return _answer(result, request, response, engine, auth)


@router.get(
    "",
    response_model=SessionPublic,
    responses={401: {"model": ErrorBody, "description": "No session or token; expired."}},
)
def who_am_i(principal: RequiredPrincipal, request: Request, response: Response) -> SessionPublic:
    """Who the session cookie (or the bearer token) speaks for: name, role, area, worker."""
    session = current_session(request) if principal.via_session else None
    expires_at = None if session is None else session.expires_at
    response.headers.update(NO_STORE)
    return _public(request.app.state.engine, principal, expires_at)


@router.delete(
    "",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(require_fetch_header)],
    responses={403: {"model": ErrorBody, "description": "`fetch_header_missing`."}},
)
def end_current_session(request: Request, engine: EngineDep) -> Response:
    """Sign out: the session ends on the server and the browser forgets its cookie.
    Without a session, nothing to end: 204 all the same. Send `X-Requested-With`."""
    auth = auth_state(request)
    session_id = session_id_of(request)
    if session_id is not None and is_well_formed_session_id(session_id):
        session_hash = hash_session_id(session_id)
        with unit_of_work(engine) as session:
            end_session(session, session_hash, auth.now())
        auth.sessions.drop(session_hash)
    response = Response(status_code=204, headers=NO_STORE)
    clear_session_cookie(response, request, secure_always=auth.config.session_cookie_secure)
    return response


def install_sessions(app: FastAPI) -> None:
    """Add the sign-in routes and the admins' account listing to `app`."""
    add_routes(app, router)
    add_routes(app, users_router)
