"""Who may read which collection: boundaries and POIs are public, incidents are not.

Incidents are readable by admins (all of them) and by supervisors (those whose grid, or
community, lies under their area code prefix); anyone else gets 401 `missing_token`
without a token and 403 `forbidden` with one (a bad token is auth's 401 `invalid_token`).
"""

from geodata.accounts import MissingToken, PermissionDenied
from geodata.db.features import Collection
from grid_service.auth import Principal, Role


def may_read(collection: Collection, caller: Principal | None) -> bool:
    """Whether the caller may read the collection at all (list it, read its items)."""
    if not collection.restricted:
        return True
    return caller is not None and caller.role in (Role.ADMIN, Role.SUPERVISOR)


def area_filter(collection: Collection, caller: Principal | None) -> str | None:
    """The area prefix the caller's reads are limited to (None: all), or 401/403."""
    if not collection.restricted:
        return None
    if caller is None:
        raise MissingToken(f"collection {collection.id} needs a supervisor's or an admin's token")
    if not may_read(collection, caller):
        raise PermissionDenied(
            f"collection {collection.id} is for supervisors and admins, not a {caller.role}"
        )
    # Principal guarantees a supervisor a non-empty prefix, so None here means admin.
    return None if caller.role is Role.ADMIN else caller.area_prefix
