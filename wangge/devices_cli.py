"""`wangge devices`: register tracking apps to workers, list and revoke them."""

from geodata.db import accounts_store, devices_store, migrate
from geodata.db.engine import create_db_engine, unit_of_work
from geodata.trackers import Device, TrackerKind, check_may_register


def add_device(
    database_url: str, worker_id: str, kind: TrackerKind, registered_by: str | None
) -> tuple[Device, str]:
    """Register a device to the worker; return it and its secret, which is stored hashed only.

    `registered_by` names the admin's or supervisor's account it is registered for (a
    supervisor must have the worker in its area); None registers it as the console's
    operator, who has the database and so an admin's rights already.
    """
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
        with unit_of_work(engine) as session:
            if registered_by is not None:
                role, area = devices_store.registrar(session, registered_by)
                grids = accounts_store.worker_grid_codes(session, worker_id)
                check_may_register(role, area, worker_id, grids)
            return devices_store.register_device(session, worker_id, kind, registered_by)
    finally:
        engine.dispose()


def list_devices(database_url: str, worker_id: str | None) -> list[Device]:
    """Every device, or the worker's, revoked ones included."""
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
        with unit_of_work(engine) as session:
            return devices_store.list_devices(session, worker_id)
    finally:
        engine.dispose()


def revoke_device(database_url: str, identifier: str) -> Device:
    """Revoke a device; a running API refuses it within its token cache TTL (5 s)."""
    engine = create_db_engine(database_url)
    try:
        migrate.require_current_schema(engine)
        with unit_of_work(engine) as session:
            return devices_store.revoke_device(session, identifier)
    finally:
        engine.dispose()
