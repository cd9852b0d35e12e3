"""The HTTP API a CRM integration drives the service with (FastAPI).

``create_app(db, token=..., settings=...)`` returns an ASGI app; the daemon mounts it on its
port, and ``followup-sync api`` serves it alone with uvicorn. Everything but the OpenAPI
document (``/openapi.json``) and its viewer (``/docs``, Swagger UI from local files:
``sync.api.docs``) needs ``Authorization: Bearer <token>``: the API writes follow-ups
that end up in people's calendars.

Routes (bodies are the follow-up document of ``mappings.model``):

=========================================  ====================================================
``GET /followups[?owner=]``                list
``POST /followups``                        create (409 if the id exists)
``GET|PUT|DELETE /followups/{id}``         read, create-or-replace, delete
``POST /followups/{id}/dates``             CalculateDays: dates with conflicts (``?conflicts=``)
``POST /dates/calculate``                  the same for a follow-up that is not stored
``POST /dates/validate``                   ValidateDays: a hand-edited date list
``POST /followups/{id}/move``              Later / Earlier on one date
``POST /followups/{id}/add-date``          Add a date (RDATE)
``POST /followups/{id}/delete-date``       Delete a date (EXDATE)
``POST /followups/{id}/occurrence``        change only this / this and following (a split)
``POST /followups/{id}/stop``              stop repeating
``POST /followups/{id}/delete-occurrence`` delete only this / this and following
=========================================  ====================================================

Every error is ``application/problem+json`` (RFC 9457) with ``type``, ``title``,
``status``, ``detail`` and, when one field is at fault, ``field`` named the way the
document names it (``recurrence.WeekPattern.Cycle``, ``end``, ``date``). Bad input is a
4xx, never a 500: the mapper's own validation decides, so the API cannot accept a
document the sync worker would later choke on.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfoNotFoundError

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.resource import check_renderable
from sync.api.docs import serve_docs_offline
from sync.config import DEFAULT_MAX_BODY_BYTES, Account, Settings
from sync.dialog import (
    DateInfo,
    DialogService,
    FollowUpNotFound,
    OperationResult,
    account_for,
    calculate_dates,
    validate_dates,
)
from sync.errors import ConfigError, StoreError
from sync.state.db import Database
from sync.state.followups import FollowUpStore

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://followup-sync.invalid/problems/"

Mode = Literal["only-this", "this-and-following"]
Handler = Callable[..., "OperationResponse"]


def _date_or_datetime(value: Any) -> Any:
    """``2026-03-16`` is a date, not midnight: it names a day's occurrence, whatever its time."""
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return value
    return value


MomentIn = Annotated[dt.datetime | dt.date, BeforeValidator(_date_or_datetime)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MoveRequest(_Strict):
    """The dialog's Later/Earlier buttons: one day, same time."""

    date: dt.date = Field(description="The date as the list shows it now.")
    direction: Literal["later", "earlier"]


class DateRequest(_Strict):
    date: dt.date


class OccurrenceChange(_Strict):
    """UpdateMode OnlyThis / ThisAndForward with the new values (unset values stay)."""

    occurrence: MomentIn = Field(
        description="Its start: where the series put it, or where it is now."
    )
    mode: Mode = "only-this"
    start: MomentIn | None = None
    end: MomentIn | None = None
    title: str | None = None
    description: str | None = None
    location: str | None = None


class StopRequest(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: MomentIn = Field(alias="from", description="The last occurrence to keep.")


class OccurrenceDelete(_Strict):
    occurrence: MomentIn
    mode: Mode = "only-this"


class ValidateRequest(_Strict):
    followup: FollowUp
    dates: list[dt.date] = Field(max_length=5000)
    conflicts: bool = True


class OperationResponse(BaseModel):
    summary: str = Field(description="What changed, in a sentence.")
    saved: list[FollowUp] = Field(description="Follow-ups written (a split writes two).")
    deleted: list[str] = Field(description="Ids deleted (nothing left of the follow-up).")


class Problem(BaseModel):
    """RFC 9457 problem details, plus the field at fault."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    item: str | None = None


_PROBLEMS = {"model": Problem, "content": {PROBLEM_JSON: {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token", **_PROBLEMS},
    404: {"description": "No such follow-up", **_PROBLEMS},
    422: {"description": "Invalid input; `field` names it", **_PROBLEMS},
}


def _load(body: FollowUp) -> FollowUp:
    """The mapper's full validation of a body (patterns, exception keys), as MappingErrors.

    ``timezone`` is checked once more here: the model lets an empty name through (it is
    read as UTC while normalising, then kept), which would fail later as a bare ValueError.
    Then ``check_renderable``, the store's own check: what every route computes from the
    body (dates, a calendar resource) can be computed.
    """
    followup = load_followup(body.to_json_dict())
    try:
        followup.zone  # noqa: B018 - evaluated for its check
    except (ValueError, ZoneInfoNotFoundError):
        raise MappingError(
            f"unknown time zone {followup.timezone!r} (use an IANA name)",
            item=followup.id,
            field="timezone",
        ) from None
    check_renderable(followup)
    return followup


def create_app(
    db: Database,
    *,
    token: str,
    settings: Settings | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The API on one database; ``settings`` give the calendars conflicts are checked in.

    A request body over ``max_body_bytes`` is answered 413 before it is read (FastAPI's
    ``max_body_size``); the read timeouts are the server's (sync.api.limits).
    """
    if not token:
        raise ConfigError("the API needs a non-empty token")
    bearer = HTTPBearer(auto_error=False, description="The token given to `followup-sync api`.")

    # The dependency sits in the default, not in Annotated: annotations are strings here
    # (``from __future__ import annotations``) and could not name the local ``bearer``.
    def authorised(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )

    app = FastAPI(
        title="followup-sync",
        version="1",
        summary="CRM follow-ups and their recurrence dialog, kept in step with CalDAV calendars.",
        dependencies=[Depends(authorised)],
        responses=_ERRORS,
        docs_url=None,  # served from local files instead: sync.api.docs
        redoc_url=None,
        max_body_size=max_body_bytes,
    )
    serve_docs_offline(app)
    _install_error_handlers(app)
    _mount_v1(app, db, settings)
    store = FollowUpStore(db)
    dialog = DialogService(db)

    def conflict_account(followup: FollowUp, name: str | None) -> Account | None:
        if settings is None or not settings.accounts:
            if name is not None:
                raise ConfigError(f"no account named {name!r} is configured")
            return None
        return account_for(settings, followup, name)

    # --- CRUD -------------------------------------------------------------------------

    @app.get("/followups", response_model=list[FollowUp], response_model_exclude_none=True)
    def list_followups(
        owner: Annotated[str | None, Query(max_length=255)] = None,
    ) -> list[FollowUp]:
        """Every stored follow-up, or the owner's."""
        return [f for f in store.all() if owner is None or f.owner == owner]

    @app.post(
        "/followups",
        status_code=201,
        response_model=FollowUp,
        response_model_exclude_none=True,
        responses={409: {"description": "The id exists", **_PROBLEMS}},
    )
    def create_followup(body: FollowUp, response: Response) -> FollowUp:
        """Store a new follow-up; the next sync takes it to the calendar."""
        followup = _load(body)
        if store.get(followup.id) is not None:
            raise HTTPException(409, f"follow-up {followup.id!r} exists; PUT it to replace it")
        store.put(followup)
        response.headers["Location"] = f"/followups/{quote(followup.id, safe='')}"
        return followup

    @app.get("/followups/{followup_id}", response_model=FollowUp, response_model_exclude_none=True)
    def get_followup(followup_id: str) -> FollowUp:
        return dialog.get(followup_id)

    @app.put("/followups/{followup_id}", response_model=FollowUp, response_model_exclude_none=True)
    def put_followup(followup_id: str, body: FollowUp) -> FollowUp:
        """Create or replace; the body's id must be the path's."""
        if body.id != followup_id:
            raise MappingError(f"is {body.id!r} but the path says {followup_id!r}", field="id")
        followup = _load(body)
        store.put(followup)
        return followup

    @app.delete("/followups/{followup_id}", status_code=204)
    def delete_followup(followup_id: str) -> Response:
        """Delete the follow-up (and, on the next sync, its calendar copies)."""
        dialog.delete(followup_id)
        return Response(status_code=204)

    # --- dates and conflicts -------------------------------------------------------------

    @app.post("/followups/{followup_id}/dates", response_model=list[DateInfo])
    def followup_dates(
        followup_id: str,
        conflicts: bool = False,
        account: Annotated[str | None, Query(max_length=255)] = None,
    ) -> list[DateInfo]:
        """CalculateDays: every date with IsConflict and Tooltip (``?conflicts=true``)."""
        followup = dialog.get(followup_id)
        return calculate_dates(
            followup, db=db, account=conflict_account(followup, account) if conflicts else None,
            conflicts=conflicts,
        )  # fmt: skip

    @app.post("/dates/calculate", response_model=list[DateInfo])
    def calculate(
        body: FollowUp,
        conflicts: bool = True,
        account: Annotated[str | None, Query(max_length=255)] = None,
    ) -> list[DateInfo]:
        """CalculateDays for a follow-up that is not stored (yet)."""
        followup = _load(body)
        return calculate_dates(
            followup, db=db, account=conflict_account(followup, account) if conflicts else None,
            conflicts=conflicts,
        )  # fmt: skip

    @app.post("/dates/validate", response_model=list[DateInfo])
    def validate(
        body: ValidateRequest, account: Annotated[str | None, Query(max_length=255)] = None
    ) -> list[DateInfo]:
        """ValidateDays: conflicts for a hand-edited list of dates at the follow-up's time."""
        followup = _load(body.followup)
        return validate_dates(
            followup, body.dates, db=db,
            account=conflict_account(followup, account) if body.conflicts else None,
            conflicts=body.conflicts,
        )  # fmt: skip

    # --- operations --------------------------------------------------------------------------

    def result(outcome: OperationResult) -> OperationResponse:
        return OperationResponse(
            summary=outcome.summary, saved=outcome.saved, deleted=outcome.deleted
        )

    def operation(path: str) -> Callable[[Handler], Handler]:
        return app.post(path, response_model=OperationResponse, response_model_exclude_none=True)

    @operation("/followups/{followup_id}/move")
    def move(followup_id: str, body: MoveRequest) -> OperationResponse:
        """Later/Earlier: the occurrence on ``date`` moves one day (an override exception)."""
        return result(dialog.move(followup_id, body.date, 1 if body.direction == "later" else -1))

    @operation("/followups/{followup_id}/add-date")
    def add(followup_id: str, body: DateRequest) -> OperationResponse:
        """Add a date at the series' time (RDATE); open-ended series refuse."""
        return result(dialog.add_date(followup_id, body.date))

    @operation("/followups/{followup_id}/delete-date")
    def delete_date(followup_id: str, body: DateRequest) -> OperationResponse:
        """Delete the occurrence on ``date`` (EXDATE)."""
        return result(dialog.delete_date(followup_id, body.date))

    @operation("/followups/{followup_id}/occurrence")
    def change(followup_id: str, body: OccurrenceChange) -> OperationResponse:
        """Change only this occurrence, or this and all following (the series splits)."""
        return result(
            dialog.change(
                followup_id, body.occurrence, mode=body.mode, start=body.start, end=body.end,
                title=body.title, description=body.description, location=body.location,
            )
        )  # fmt: skip

    @operation("/followups/{followup_id}/stop")
    def stop(followup_id: str, body: StopRequest) -> OperationResponse:
        """Stop repeating after ``from``; from the first occurrence it becomes a single one."""
        return result(dialog.stop(followup_id, body.from_))

    @operation("/followups/{followup_id}/delete-occurrence")
    def delete_occurrence(followup_id: str, body: OccurrenceDelete) -> OperationResponse:
        """Delete only this occurrence, or this and all following."""
        return result(dialog.delete(followup_id, body.occurrence, body.mode))

    return app


def _mount_v1(app: FastAPI, db: Database, settings: Settings | None) -> None:
    """``/v1/...`` (sync.api.v1): pages, ETags and If-Match, the change feed."""
    from sync.api import v1 as api_v1

    api_v1.install_error_handlers(app)
    api_v1.describe_local_times(app)
    app.include_router(api_v1.create_router(db, settings))


# --- errors as problem+json --------------------------------------------------------------------


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


def _install_error_handlers(app: FastAPI) -> None:
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
