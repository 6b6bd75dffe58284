"""Domain exceptions; the adapters map them to HTTP statuses or dead-letter reasons."""


class WanggeError(Exception):
    """Base of every domain error; `code` is the stable machine-readable reason."""

    code = "wangge_error"


class SchemaMissing(WanggeError):
    """The database has not been migrated to the current schema."""

    code = "schema_missing"


class GridNotFound(WanggeError):
    """No grid has the requested code."""

    code = "grid_not_found"


class InvalidGeometry(WanggeError):
    """A geometry is not valid (self-intersection, wrong type, empty...)."""

    code = "invalid_geometry"


class ImportRefused(WanggeError):
    """A boundary file failed validation; nothing was written."""

    code = "import_refused"

    def __init__(self, message: str, problems: list["object"] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class InvalidWeek(WanggeError):
    """A week name that is not `YYYY-Www`, or a week its year does not have."""

    code = "invalid_week"


class InvalidAreaCode(WanggeError):
    """A code filter that is not 1 to 15 digits, or names an area finer than the level."""

    code = "invalid_code"


class WorkerNotFound(WanggeError):
    """No worker has the requested id."""

    code = "worker_not_found"
