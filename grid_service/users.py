"""`GET /api/v1/users`: the accounts, for an admin, as `wangge users list` prints them."""

from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from geodata.accounts import Role
from geodata.db import accounts_store
from grid_service.auth import AdminPrincipal, auth_state
from grid_service.deps import EngineDep
from grid_service.errors import ErrorBody

router = APIRouter(prefix="/api/v1/users", tags=["users"])

MAX_LIMIT: Final = 10_000


class AccountPublic(BaseModel):
    """An account as an admin sees it: never a password hash, a token or a session id."""

    name: str
    role: Role
    area_prefix: str | None
    worker_id: str | None
    password: str = Field(description="none, one-time (to be changed at first sign-in) or set")
    locked_until: datetime | None = Field(description="while repeated failures lock the name")
    live_tokens: int
    live_sessions: int
    created_at: datetime


class AccountsPublic(BaseModel):
    """A page of accounts by name, and how many match."""

    number_matched: int
    items: list[AccountPublic]


@router.get(
    "",
    response_model=AccountsPublic,
    responses={
        401: {"model": ErrorBody, "description": "No token or session."},
        403: {"model": ErrorBody, "description": "Not an admin (`forbidden`)."},
        422: {"model": ErrorBody, "description": "`invalid_request`: a bad role, area or limit."},
    },
)
def list_users(
    _admin: AdminPrincipal,
    request: Request,
    response: Response,
    engine: EngineDep,
    role: Role | None = None,
    area: Annotated[
        str | None,
        Query(pattern=r"^[0-9]{6}([0-9]{3}){0,3}$", description="accounts under this code"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
) -> AccountsPublic:
    """Accounts by name: role, area or worker, password state, lock, live tokens and
    sessions. Admins only."""
    with Session(engine) as session:
        accounts, total = accounts_store.list_accounts(
            session, auth_state(request).now(), role=role, area=area, limit=limit
        )
    response.headers["Cache-Control"] = "no-store"
    return AccountsPublic(
        number_matched=total,
        items=[
            AccountPublic(
                name=a.name,
                role=a.role,
                area_prefix=a.area_prefix,
                worker_id=a.worker_id,
                password=a.password,
                locked_until=a.locked_until,
                live_tokens=a.live_tokens,
                live_sessions=a.live_sessions,
                created_at=a.created_at,
            )
            for a in accounts
        ],
    )
