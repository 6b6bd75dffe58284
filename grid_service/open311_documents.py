"""How the Open311 facade is described in OpenAPI: its documents, the standard's error
array, the query parameters and the posted fields (`grid_service.open311` serves them).

The routes answer JSON built by `geodata.open311`; these models say what that JSON is,
and the API's fuzz test holds every answer to them.
"""

from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from geodata.open311_input import CONTACT_FIELDS
from grid_service.errors import ErrorBody

FORM_MEDIA_TYPE: Final = "application/x-www-form-urlencoded"


class Open311ErrorItem(BaseModel):
    """One error of the standard's error array."""

    code: int = Field(description="the HTTP status")
    description: str


class ServicePublic(BaseModel):
    """A service: an incident category residents may report."""

    service_code: str = Field(description="the category's code, e.g. environment.garbage")
    service_name: str
    description: str
    metadata: bool = Field(description="always false: no service has attributes")
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str


class ServiceAttributeValue(BaseModel):
    """One choice of a list attribute."""

    key: str
    name: str


class ServiceAttribute(BaseModel):
    """An attribute of a service definition (no service has one yet)."""

    variable: bool
    code: str
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[ServiceAttributeValue] = []


class ServiceDefinition(BaseModel):
    """A service's definition: its attributes (none)."""

    service_code: str
    attributes: list[ServiceAttribute]


class ServiceRequestPublic(BaseModel):
    """A service request as the standard has it; no contact field is ever among these."""

    service_request_id: str = Field(description="the incident's id")
    status: Literal["open", "closed"]
    status_notes: str = Field(description="where the case stands (docs/INTERFACES.md)")
    service_name: str | None
    service_code: str
    description: str | None
    agency_responsible: str | None = Field(
        description="the community, or the street office or district a case went up to"
    )
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float
    long: float
    media_url: str | None


class RequestCreated(BaseModel):
    """A posted request: its id, readable at once with GET requests/{id}.json."""

    service_request_id: str = Field(description="the incident's id")
    service_notice: str | None
    account_id: str | None = Field(description="always null: wangge keeps no resident accounts")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "a parameter is missing, malformed or out of range",
        403: "api_key missing, unknown or revoked",
        404: "no such service or service request",
        429: "the client's api_key posted too often: retry after Retry-After seconds",
        503: "the broker or the database is away: retry after Retry-After seconds",
    }
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": list[Open311ErrorItem], "description": texts[status]}
        for status in statuses
    }
    # Refused by the edge before any route runs, so in wangge's own error shape.
    responses[422] = {"model": ErrorBody, "description": "invalid_request: a NUL in the URL"}
    return responses


def query_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


REQUEST_FIELDS: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["api_key", "service_code", "lat", "long"],
    "properties": {
        "api_key": {"type": "string", "description": "from `wangge open311 keys add`"},
        "service_code": {"type": "string"},
        "lat": {"type": "number", "minimum": -90, "maximum": 90, "description": "WGS84"},
        "long": {"type": "number", "minimum": -180, "maximum": 180, "description": "WGS84"},
        "description": {"type": "string", "maxLength": 4000},
        "address_string": {"type": "string", "maxLength": 500},
        "media_url": {"type": "string", "format": "uri", "maxLength": 2048},
        "jurisdiction_id": {"type": "string", "description": "ignored"},
        **{
            name: {"type": "string", "description": "personal: stored apart, never returned"}
            for name in CONTACT_FIELDS
        },
    },
}
