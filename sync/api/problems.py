"""Every error of the API as ``application/problem+json`` (RFC 9457).

``problem()`` builds one answer; ``install_error_handlers`` turns what the routes raise
(the mapper's ``MappingError``, FastAPI's validation errors, HTTP errors, a bad account
name, a calendar server failing the conflict check) into one, with ``field`` named the
way the follow-up document names it. Bad input is a 4xx, never a 500.
"""

from __future__ import annotations

import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from mappings.errors import MappingError
from sync.dialog import FollowUpNotFound
from sync.errors import ConfigError, StoreError

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://followup-sync.invalid/problems/"


class Problem(BaseModel):
    """RFC 9457 problem details, plus the field at fault."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    item: str | None = None


#: The OpenAPI description of a problem answer, for a route's ``responses``.
PROBLEM_RESPONSE: dict[str, Any] = {"model": Problem, "content": {PROBLEM_JSON: {}}}
#: What every route may answer (the app's default ``responses``).
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token", **PROBLEM_RESPONSE},
    404: {"description": "No such follow-up", **PROBLEM_RESPONSE},
    422: {"description": "Invalid input; `field` names it", **PROBLEM_RESPONSE},
}


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    field: str | None = None,
    item: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    slug = title.lower().replace(" ", "-")
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    if item is not None:
        body["item"] = item
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    422: "Invalid input",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MappingError)
    async def mapping_error(_request: Request, exc: MappingError) -> JSONResponse:
        if isinstance(exc, FollowUpNotFound):
            return problem(
                404, "Not found", f"no follow-up {exc.item!r}", field="id", item=exc.item
            )
        return problem(422, "Invalid input", exc.message, field=exc.field, item=exc.item)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            detail = _json_error_detail(errors[0], exc.body)
            return problem(422, "Invalid input", detail, field="body")
        field, message = _field_of(errors[0]) if errors else (None, "invalid request")
        return problem(422, "Invalid input", message, field=field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        unreadable = _unreadable_body(exc)
        if unreadable is not None:
            return problem(400, title, unreadable, field="body")
        return problem(exc.status_code, title, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(ConfigError)
    async def config_error(_request: Request, exc: ConfigError) -> JSONResponse:
        return problem(400, "Bad request", str(exc), field="account")

    @app.exception_handler(OverflowError)
    async def overflow_error(_request: Request, exc: OverflowError) -> JSONResponse:
        # Dates near year 1 or 9999 given a time zone or a length fall off the calendar.
        return problem(422, "Invalid input", f"a date or time is out of range: {exc}", field="body")

    @app.exception_handler(StoreError)
    async def store_error(_request: Request, exc: StoreError) -> JSONResponse:
        # The calendar server failed us (conflict checks): not the caller's fault, nor ours.
        return problem(502, "Calendar server error", str(exc))


def _json_error_detail(error: Any, body: Any) -> str:
    """FastAPI reports a JSON syntax error at a character offset: say line and column."""
    reason = str((error.get("ctx") or {}).get("error") or "invalid")
    offsets = error.get("loc", ())[1:]
    where = ""
    if offsets and isinstance(offsets[0], int) and isinstance(body, str | bytes):
        text = body if isinstance(body, str) else body.decode("utf-8", "replace")
        offset = offsets[0]
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        where = f" at line {line} column {column}"
    return f"the request body is not valid JSON: {reason}{where}"


def _unreadable_body(exc: StarletteHTTPException) -> str | None:
    """What made FastAPI's "There was an error parsing the body" (a 400 with no reason).

    FastAPI chains the parser's exception: a structure nested deeper than the parser's
    recursion limit, a number with more digits than Python converts, bytes that are not
    UTF-8. Say which, instead of a generic message.
    """
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return None
    if isinstance(cause, RecursionError):
        return "the request body is not valid JSON: nested too deeply to read"
    if isinstance(cause, UnicodeDecodeError):
        return f"the request body is not valid JSON: not UTF-8 at byte {cause.start}"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        digits = sys.get_int_max_str_digits()
        return f"the request body is not valid JSON: a number has more than {digits} digits"
    return None


def _field_of(error: Any) -> tuple[str | None, str]:
    """The document's name for the field a pydantic error is about, and a readable message.

    FastAPI prefixes locations with where the value came from (``body``, ``query``);
    validators of the follow-up model name the field at the start of their message
    ("end: is before start") when the location alone cannot.
    """
    loc = [str(part) for part in error.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header"):
        source, loc = loc[0], loc[1:]
    else:
        source = "body"
    # Unions add the member type tried ("datetime", "function-after[...]"): not a field.
    loc = [p for i, p in enumerate(loc) if not ((i and p in ("datetime", "date")) or "[" in p)]
    message = str(error.get("msg", "invalid"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    head, sep, rest = message.partition(": ")
    if sep and " " not in head and head.replace(".", "").replace("_", "").isalnum():
        prefix = ".".join(loc)
        return (f"{prefix}.{head}" if prefix and not head.startswith(prefix) else head), rest
    if not loc:
        return source, message
    return ".".join(loc), message
