"""The bodies the API reads and writes, and what its OpenAPI document says of them.

The request models of the dialog operations (shared by the unversioned routes and
``/v1``), v1's pages, change entries and webhook subscriptions, and ``load_body``, the
mapper's full validation every route applies to a follow-up it was sent. Kept apart
from the routes so every router (``sync.api.unversioned``, ``sync.api.v1``,
``sync.api.v1_feed``, ``sync.api.status``) imports them from below.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfoNotFoundError

from fastapi import FastAPI, Header
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.resource import check_renderable
from sync.api.problems import PROBLEM_RESPONSE

Mode = Literal["only-this", "this-and-following"]


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


def load_body(body: FollowUp) -> FollowUp:
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


# --- v1 --------------------------------------------------------------------------------


IfMatch = Annotated[
    str | None,
    Header(
        max_length=2000,
        description="Write only if the follow-up is still this version (its ETag), or `*`.",
    ),
]
IfNoneMatch = Annotated[
    str | None, Header(max_length=2000, description="`*`: create only, 412 if it exists.")
]


class Entry(BaseModel):
    """One follow-up in a list, with the version to send back in If-Match."""

    etag: str
    updated_at: dt.datetime
    followup: FollowUp


class FollowUpPage(BaseModel):
    items: list[Entry]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: done.")
    changes_cursor: str = Field(
        description="The change feed's position when this page was read: after a full "
        "listing, read `/v1/changes?since=` this to get every later change."
    )


class Change(BaseModel):
    """One change to one follow-up (webhooks deliver the same object)."""

    cursor: str = Field(description="Pass as `since` to read what came after this change.")
    at: dt.datetime
    origin: str = Field(description="calendar | crm | invitation")
    followup_id: str
    owner: str | None = None
    action: str = Field(description="created | updated | deleted")
    changes: dict[str, Any] = Field(
        description="`fields`: top-level fields that changed; `occurrences`: lists of "
        "original starts under moved / cancelled / added / changed; `split_into` / "
        "`split_from`: the other id of a series split."
    )
    etag: str | None = Field(description="The follow-up's new ETag; null once deleted.")


class ChangePage(BaseModel):
    items: list[Change]
    next_cursor: str = Field(description="Pass as `since` next time (also when no items came).")
    more: bool = Field(description="More changes are waiting: ask again at once.")


class PreconditionProblem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    etag: str | None = Field(description="The current version; null if it does not exist.")
    current: FollowUp | None = None


PRECONDITION_FAILED: dict[int | str, dict[str, Any]] = {
    412: {
        "description": "The follow-up is not the version given (If-Match / If-None-Match)",
        "model": PreconditionProblem,
        "content": {"application/problem+json": {}},
    }
}
BAD_CURSOR: dict[int | str, dict[str, Any]] = {
    400: {"description": "A cursor or parameter this service did not hand out", **PROBLEM_RESPONSE}
}
ETAG_HEADER = {"ETag": {"description": "The follow-up's version", "schema": {"type": "string"}}}


EventType = Literal["*", "followup.created", "followup.updated", "followup.deleted"]


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=512,
        description="The HMAC-SHA256 key; left out: one is made and returned once.",
    )
    events: list[EventType] = Field(default=["*"], min_length=1, max_length=4)


class WebhookStatus(BaseModel):
    id: str
    url: str
    events: list[str]
    source: str = Field(description="config ([webhooks.NAME]) or api")
    paused: bool = Field(description="Stopped after failing too often; resume it.")
    failures: int
    last_error: str | None
    next_attempt_at: dt.datetime | None
    last_delivery_at: dt.datetime | None
    delivered_through: str = Field(description="Feed cursor of the last change it acknowledged.")
    backlog: int = Field(description="Feed entries after that cursor.")
    gap: bool = Field(description="Retention dropped changes it never got (paused too long).")


class WebhookCreated(WebhookStatus):
    secret: str = Field(description="The signing key: shown only in this answer.")


class WebhookPage(BaseModel):
    items: list[WebhookStatus]
    next_cursor: str | None


#: What the documents' times really are: local (the follow-up's ``timezone`` applies) unless
#: an offset is given, or a date. JSON Schema's ``date-time`` demands an offset, so the
#: generated ``anyOf [date-time, date]`` would call every stored document invalid.
MOMENT_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$",
    "description": "A date, or a date and time: local to the follow-up's timezone unless "
    "it carries an offset.",
}


def _moment_schemas(node: Any) -> Any:
    if isinstance(node, dict):
        options = node.get("anyOf")
        if isinstance(options, list):
            formats = {o.get("format") for o in options if isinstance(o, dict)}
            if {"date-time", "date"} <= formats:
                rest = [o for o in options if o.get("format") not in ("date-time", "date")]
                moment = {k: v for k, v in node.items() if k != "anyOf"} | MOMENT_SCHEMA
                return {"anyOf": [moment, *rest]} if rest else moment
        return {key: _moment_schemas(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_moment_schemas(value) for value in node]
    return node


def describe_local_times(app: FastAPI) -> None:
    """The OpenAPI document says what follow-up times look like (``MOMENT_SCHEMA``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _moment_schemas(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
