"""Alembic environment: PostGIS-aware autogenerate via GeoAlchemy2's helpers."""

import re

from alembic import context
from geoalchemy2 import alembic_helpers
from sqlalchemy import engine_from_config, pool

from geodata.db.models import Base

config = context.config
target_metadata = Base.metadata

# PostGIS and tiger-geocoder tables are not ours to manage.
_FOREIGN_TABLES = {"spatial_ref_sys", "topology", "layer"}
# The partitions of checkins and patrol_checkins (migrations 0022, 0023) are made by the
# database as weeks arrive; they are part of the partitioned tables the models describe,
# not tables of their own.
_PARTITION = re.compile(r"(patrol_)?checkins_(default|[0-9]{4}w[0-9]{2})")


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Skip PostGIS' own tables, then let GeoAlchemy2 filter its spatial indexes."""
    if type_ == "table" and name in _FOREIGN_TABLES:
        return False
    if type_ == "table" and reflected and name and _PARTITION.fullmatch(name):
        return False
    return bool(alembic_helpers.include_object(obj, name, type_, reflected, compare_to))  # type: ignore[no-untyped-call]


def run_migrations_offline() -> None:
    """Emit SQL without a connection (`alembic upgrade --sql`)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        include_object=include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against the configured database."""
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            process_revision_directives=alembic_helpers.writer,
            render_item=alembic_helpers.render_item,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
