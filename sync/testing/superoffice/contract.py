"""SuperOffice's published API contract, checked on every request and response of the stand-in.

The vendored files in `openapi/` are Swagger 2.0 cuts of SuperOffice's own descriptions (see
`openapi/README.md`). openapi-core reads OpenAPI 3 only, so they are converted here, in memory, by a
mechanical translation (`definitions` -> `components/schemas`, body parameters -> `requestBody`,
response `schema` -> `content`). Where the translation departs from the text, it is because the
Swagger generator wrote something SuperOffice does not send; each such place is listed in
`DEVIATIONS` and in docs/reference/superoffice-standin.md, so a reader can judge them.

openapi-core is the `test` extra: this module imports it at the top and is itself imported only
when a stand-in is started with validation on.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.responses.exceptions import ResponseNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

OPENAPI_DIR = Path(__file__).resolve().parent / "openapi"
DESCRIPTION_FILES = (
    "Swagger-v1-Appointment.json",
    "Swagger-v1-AppointmentAgent.json",
    "Swagger-v1-Webhook.json",
)

WEEKDAY_NAMES = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"

DEVIATIONS = (
    "security requirements dropped: they name schemes ('SuperOffice Password', 'SuperId "
    "Authentication') that the files never define; the stand-in checks Basic and SOTicket itself",
    "a C# `object` (`{type: object}` with no properties) accepts any JSON value, as the wire does",
    "RecurrenceWeekPattern.Weekdays also accepts several day names joined by ', ' (a .NET [Flags] "
    "enum; the files list single names only)",
    "date-time accepts SuperOffice's local timestamps without an offset ('2021-11-04T11:30:00')",
)


class ContractViolation(AssertionError):
    """A request or response of the stand-in left SuperOffice's published description."""


def _convert_schema(node: Any) -> Any:
    """Swagger 2.0 schema -> OpenAPI 3.0 schema (refs, C# `object`, flags weekdays, date-time)."""
    if isinstance(node, list):
        return [_convert_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "object" and not {"properties", "additionalProperties"} & node.keys():
        return {key: value for key, value in node.items() if key not in ("type", "format")}
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            converted[key] = value.replace("#/definitions/", "#/components/schemas/")
        elif key == "format" and value == "date-time":
            converted[key] = "superoffice-date-time"
        else:
            converted[key] = _convert_schema(value)
    return converted


def _parameter(swagger: dict[str, Any]) -> dict[str, Any]:
    schema_keys = ("type", "format", "enum", "items", "default")
    schema = _convert_schema({key: swagger[key] for key in schema_keys if key in swagger})
    parameter = {key: swagger[key] for key in ("name", "in", "description", "required")}
    parameter["schema"] = schema
    return parameter


def _operation(swagger: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        key: swagger[key] for key in ("operationId", "summary", "tags") if key in swagger
    }
    parameters = []
    for parameter in swagger.get("parameters", []):
        if parameter["in"] == "body":
            operation["requestBody"] = {
                "required": parameter.get("required", False),
                "content": {"application/json": {"schema": _convert_schema(parameter["schema"])}},
            }
        else:
            parameters.append(_parameter(parameter))
    operation["parameters"] = parameters
    responses: dict[str, Any] = {}
    for status, response in swagger["responses"].items():
        converted: dict[str, Any] = {"description": response.get("description", "")}
        if "schema" in response:
            schema = _convert_schema(response["schema"])
            converted["content"] = {"application/json": {"schema": schema}}
        responses[status] = converted
    operation["responses"] = responses
    return operation


def _widen_weekdays(schemas: dict[str, Any]) -> None:
    week = schemas.get("SuperOffice.CRM.Services.RecurrenceWeekPattern")
    if week is None:
        return
    weekdays = week["properties"]["Weekdays"]
    weekdays.pop("enum")
    weekdays["pattern"] = f"^(Unknown|({WEEKDAY_NAMES})(, ({WEEKDAY_NAMES}))*)$"


def merged_openapi3() -> dict[str, Any]:
    """The three vendored descriptions as one OpenAPI 3.0 document (no two share a path)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name in DESCRIPTION_FILES:
        swagger = json.loads((OPENAPI_DIR / name).read_text(encoding="utf-8"))
        for path, operations in swagger["paths"].items():
            paths[path] = {method: _operation(op) for method, op in operations.items()}
        for schema_name, schema in swagger["definitions"].items():
            schemas.setdefault(schema_name, _convert_schema(copy.deepcopy(schema)))
    _widen_weekdays(schemas)
    return {
        "openapi": "3.0.3",
        "info": {"title": "SuperOffice Web API (vendored subset)", "version": "v1"},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _superoffice_date_time(value: str) -> bool:
    """ISO 8601 with or without an offset: SuperOffice sends local times without one."""
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@cache
def superoffice_openapi() -> OpenAPI:
    """The validator, built once per process (the conversion takes a moment)."""
    config = Config(
        extra_format_validators={"superoffice-date-time": _superoffice_date_time},
    )
    return OpenAPI.from_dict(merged_openapi3(), config=config)


@dataclass
class RecordedRequest:
    """What openapi-core needs of a request (its `Request` protocol), taken from the wire."""

    host_url: str
    path: str
    method: str
    query: str
    headers: dict[str, str]
    body: bytes | None
    content_type: str = "application/json"
    parameters: RequestParameters = field(init=False)

    def __post_init__(self) -> None:
        self.method = self.method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(self.query, keep_blank_values=True)),
            header=Headers(self.headers),
        )

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path


@dataclass
class RecordedResponse:
    """What openapi-core needs of a response (its `Response` protocol)."""

    status_code: int
    data: bytes
    headers: dict[str, str]
    content_type: str = "application/json"


def _explain(error: BaseException) -> str:
    """openapi-core's error and the schema errors under it, on one line."""
    parts = [repr(error)]
    cause = error.__cause__
    while cause is not None:
        details = getattr(cause, "schema_errors", None)
        if details:
            parts.append("; ".join(f"{e.json_path}: {e.message}" for e in details))
        else:
            parts.append(repr(cause))
        cause = cause.__cause__
    return " <- ".join(parts)


def check_request(request: RecordedRequest) -> None:
    """Raise ContractViolation when the request does not fit SuperOffice's description."""
    try:
        superoffice_openapi().validate_request(request)
    except Exception as error:  # openapi-core raises a family of errors; any one is a violation
        detail = f"{request.method.upper()} {request.path}: {_explain(error)}"
        raise ContractViolation(detail) from error


def check_response(request: RecordedRequest, response: RecordedResponse) -> bool:
    """Raise ContractViolation when the response does not fit SuperOffice's description.

    A status the description does not list for the operation (401 on every call, 412 on the
    Agents, 400 on a refused webhook) cannot be checked: returns False, and nothing is claimed.
    """
    try:
        superoffice_openapi().validate_response(request, response)
    except ResponseNotFound:
        return False
    except Exception as error:  # openapi-core raises a family of errors; any one is a violation
        detail = f"{request.method.upper()} {request.path} -> {response.status_code}: "
        raise ContractViolation(detail + _explain(error)) from error
    return True
