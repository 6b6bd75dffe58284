"""A checked CQL2 filter (geodata/cql2.py) as a SQLAlchemy condition over a feature query.

pygeofilter's SQLAlchemy backend evaluates the tree; two handlers are wangge's own:
a spatial literal is bound as WKT in EPSG:4326 (the checks made it CRS84 GeoJSON), and
the one function left after the checks, CASEI, is PostgreSQL's lower(). Every value is a
bound parameter; the columns come only from `filter_columns`, never from the filter.
"""

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, cast

from geoalchemy2 import Geometry
from pygeofilter import ast, values
from pygeofilter.backends.evaluator import handle
from pygeofilter.backends.sqlalchemy.evaluate import SQLAlchemyFilterEvaluator
from shapely.geometry import shape
from sqlalchemy import ColumnElement, DateTime, Numeric, String, func, literal_column

from geodata.cql2 import CheckedFilter, QueryableType

STORAGE_SRID: Final = 4326

# Numbers are compared as numeric, so that `households > 2.5` means what it says (an
# integer-typed parameter would be cast, and 2.5 rounded).
_COLUMN_TYPES: Final[Mapping[QueryableType, Any]] = {
    "string": String(),
    "integer": Numeric(),
    "date-time": DateTime(timezone=True),
    "geometry": Geometry(srid=STORAGE_SRID),
}


def filter_columns(
    queryables: Mapping[str, QueryableType], geometry_column: str = "geom"
) -> dict[str, ColumnElement[Any]]:
    """Each queryable as a typed column of the alias `f` the feature queries select from."""
    # literal_column: `f` is the feature query's own textual FROM, which SQLAlchemy must
    # not add a second time as it would a table's.
    return {
        name: literal_column(
            f"f.{geometry_column if kind == 'geometry' else name}", _COLUMN_TYPES[kind]
        )
        for name, kind in queryables.items()
    }


Handler = TypeVar("Handler", bound=Callable[..., Any])


def _handles(*node_classes: type) -> Callable[[Handler], Handler]:
    """pygeofilter's `handle`, typed: registers a method for these node classes."""
    return cast(Callable[[Handler], Handler], handle(*node_classes))


class _Evaluator(SQLAlchemyFilterEvaluator):  # type: ignore[misc]  # pygeofilter is untyped
    @_handles(values.Geometry)
    def geometry(self, node: values.Geometry) -> Any:
        return func.ST_GeomFromText(shape(node.geometry).wkt, STORAGE_SRID)

    @_handles(ast.Function)
    def function(self, node: ast.Function, *arguments: Any) -> Any:
        return func.lower(*arguments)  # CASEI, the only function the checks let through


def filter_condition(
    checked: CheckedFilter, columns: Mapping[str, ColumnElement[Any]]
) -> ColumnElement[bool]:
    """The filter as a WHERE condition over `columns` (from `filter_columns`)."""
    condition: ColumnElement[bool] = _Evaluator(dict(columns), undefined_as_null=False).evaluate(
        checked.node
    )
    return condition
