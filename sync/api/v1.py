"""API v1: what a CRM adapter needs to keep its side in step (``/v1/...``).

Mounted by ``sync.api.app.create_app`` next to the unversioned routes, which stay as they
are. What v1 adds:

* **Pages.** Every list answers ``{"items": [...], "next_cursor": ...}``; pass
  ``cursor=`` back for the next page. Cursors are opaque (base64 of a keyset position),
  so no page skips or repeats an item when others are written in between.
* **Versions.** A follow-up's ``ETag`` is its content hash. ``PUT``, ``PATCH``,
  ``DELETE`` and the dialog operations honour ``If-Match`` (412 with the current
  version in the body when it moved) and ``If-None-Match: *`` (create only). The check
  and the write happen in one transaction holding the change feed's write lock
  (``sync.state.changes.lock_writes``), so a calendar pull cannot land between them.
* **The change feed.** ``GET /v1/changes?since=CURSOR``: every change in commit order,
  with its origin, what changed and the new ETag; 410 once retention dropped the cursor.
* **Webhooks and status**: ``sync.webhooks`` and ``sync.api.status`` add their routes
  to the same router.

``PATCH`` takes a JSON merge patch (RFC 7396, ``application/merge-patch+json`` or plain
JSON): eight lines of code, written here rather than pulling in a library for it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from mappings.errors import MappingError
from mappings.model import FollowUp, load_followup
from sync.api.app import (
    _PROBLEMS,
    PROBLEM_BASE,
    DateRequest,
    MoveRequest,
    OccurrenceChange,
    OccurrenceDelete,
    OperationResponse,
    StopRequest,
    _load,
    problem,
)
from sync.config import Settings
from sync.dialog import DialogService, FollowUpNotFound, OperationResult, VersionMoved
from sync.state import changes
from sync.state import followups as crm_store
from sync.state.db import Database, FollowUpRow, SyncItem, as_utc

MAX_PAGE = 1000
DEFAULT_PAGE = 100
#: How long the feed keeps entries when the config does not say (``[api] feed_retention_days``).
DEFAULT_RETENTION = dt.timedelta(days=7)
_LIST_CURSOR = "f1:"

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


_412: dict[int | str, dict[str, Any]] = {
    412: {
        "description": "The follow-up is not the version given (If-Match / If-None-Match)",
        "model": PreconditionProblem,
        "content": {"application/problem+json": {}},
    }
}
_400: dict[int | str, dict[str, Any]] = {
    400: {"description": "A cursor or parameter this service did not hand out", **_PROBLEMS}
}
_ETAG_HEADER = {"ETag": {"description": "The follow-up's version", "schema": {"type": "string"}}}


class Precondition(Exception):
    """412: a conditional request found another version (``current``: the live document)."""

    def __init__(self, followup_id: str, current: FollowUp | None) -> None:
        super().__init__(followup_id)
        self.followup_id = followup_id
        self.current = current


class BadCursor(Exception):
    """A cursor this service did not hand out (``field``: the parameter)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


# --- helpers --------------------------------------------------------------------------------


def _etag_matches(header: str, etag: str | None) -> bool:
    """RFC 9110 If-Match: ``*`` or a list of entity tags, compared strongly."""
    tags = [t.strip() for t in header.split(",") if t.strip()]
    if "*" in tags:
        return etag is not None
    return etag is not None and etag in tags


def check_preconditions(
    session: Session, followup_id: str, if_match: str | None, if_none_match: str | None
) -> FollowUpRow | None:
    """Lock follow-up writes, then evaluate the headers; returns the live row or None."""
    changes.lock_writes(session)
    row = session.get(FollowUpRow, followup_id)
    live = row if row is not None and not row.deleted else None
    etag = changes.etag_of(live.content_hash) if live is not None else None
    current = load_followup(live.document) if live is not None else None
    if if_match is not None and not _etag_matches(if_match, etag):
        raise Precondition(followup_id, current)
    if if_none_match is not None:
        tags = [t.strip() for t in if_none_match.split(",")]
        if ("*" in tags and live is not None) or (etag is not None and etag in tags):
            raise Precondition(followup_id, current)
    return live


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _list_cursor(last_id: str) -> str:
    raw = (_LIST_CURSOR + last_id).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after_id(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(f"{cursor!r} is not a cursor of this list", "cursor") from None
    if not text.startswith(_LIST_CURSOR):
        raise BadCursor(f"{cursor!r} is not a cursor of this list", "cursor")
    return text[len(_LIST_CURSOR) :]


def _feed_cursor(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return changes.decode_cursor(value)
    except changes.CursorInvalid as exc:
        raise BadCursor(str(exc), "since") from None


def _entry(row: FollowUpRow) -> Entry:
    return Entry(
        etag=changes.etag_of(row.content_hash),
        updated_at=as_utc(row.updated_at),
        followup=load_followup(row.document),
    )


def _with_etag(followup: FollowUp, response: Response) -> FollowUp:
    response.headers["ETag"] = changes.etag_of(crm_store.content_hash(followup))
    return followup


# --- the router -------------------------------------------------------------------------------


def create_router(
    db: Database, settings: Settings | None, *, retention: dt.timedelta | None = None
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["v1"])

    def in_account(name: str) -> Callable[[Session, list[FollowUpRow]], list[FollowUpRow]]:
        """Rows of the account: synced to it, made in its calendar, or selected by it."""
        account = settings.accounts.get(name) if settings is not None else None

        def keep(session: Session, rows: list[FollowUpRow]) -> list[FollowUpRow]:
            ids = [row.id for row in rows]
            synced = set(
                session.scalars(
                    select(SyncItem.followup_id).where(
                        SyncItem.account == name, SyncItem.followup_id.in_(ids)
                    )
                )
            )
            return [
                row
                for row in rows
                if row.id in synced
                or row.origin_account == name
                or (
                    account is not None
                    and row.origin_account is None
                    and account.selects(followup_id=row.id, owner=row.owner, kind=row.kind)
                )
            ]

        return keep

    @router.get("/followups", response_model=FollowUpPage, responses=_400)
    def list_followups(
        owner: Annotated[str | None, Query(max_length=255)] = None,
        account: Annotated[str | None, Query(max_length=255)] = None,
        updated_since: Annotated[
            dt.datetime | None, Query(description="Only follow-ups written at or after this.")
        ] = None,
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> FollowUpPage:
        """Live follow-ups by id, a page at a time, filtered by owner, account and time."""
        after = _after_id(cursor)
        since = updated_since
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        with db.session() as session:
            feed_position = changes.head(session).last_seq
            items: list[FollowUpRow] = []
            more = False
            for chunk in _chunks(session, after, owner, since, limit):
                kept = in_account(account)(session, chunk) if account is not None else chunk
                items.extend(kept)
                if len(items) > limit:
                    more = True
                    break
            items = items[:limit]
            return FollowUpPage(
                items=[_entry(row) for row in items],
                next_cursor=_list_cursor(items[-1].id) if more and items else None,
                changes_cursor=changes.encode_cursor(feed_position),
            )

    @router.post(
        "/followups",
        status_code=201,
        response_model=FollowUp,
        response_model_exclude_none=True,
        responses={409: {"description": "The id exists", **_PROBLEMS}},
    )
    def create_followup(body: FollowUp, response: Response) -> FollowUp | JSONResponse:
        """Store a new follow-up (409 if the id exists)."""
        followup = _load(body)
        with db.sessions.begin() as session:
            if check_preconditions(session, followup.id, None, None) is not None:
                return problem(409, "Conflict", f"follow-up {followup.id!r} exists")
            crm_store.save(session, followup)
        response.headers["Location"] = f"/v1/followups/{followup.id}"
        return _with_etag(followup, response)

    @router.get(
        "/followups/{followup_id}",
        response_model=FollowUp,
        response_model_exclude_none=True,
        responses={200: {"headers": _ETAG_HEADER}, 304: {"description": "Not modified"}},
    )
    def get_followup(
        followup_id: str, response: Response, if_none_match: IfNoneMatch = None
    ) -> Any:
        with db.session() as session:
            row = session.get(FollowUpRow, followup_id)
            if row is None or row.deleted:
                raise FollowUpNotFound(followup_id)
            etag = changes.etag_of(row.content_hash)
            if if_none_match is not None and _etag_matches(if_none_match, etag):
                return Response(status_code=304, headers={"ETag": etag})
            response.headers["ETag"] = etag
            return load_followup(row.document)

    @router.put(
        "/followups/{followup_id}",
        response_model=FollowUp,
        response_model_exclude_none=True,
        responses={201: {"description": "Created", "model": FollowUp}, **_412},
    )
    def put_followup(
        followup_id: str,
        body: FollowUp,
        response: Response,
        if_match: IfMatch = None,
        if_none_match: IfNoneMatch = None,
    ) -> FollowUp:
        """Create or replace; conditional on If-Match / If-None-Match when given."""
        if body.id != followup_id:
            raise MappingError(f"is {body.id!r} but the path says {followup_id!r}", field="id")
        followup = _load(body)
        with db.sessions.begin() as session:
            live = check_preconditions(session, followup_id, if_match, if_none_match)
            crm_store.save(session, followup)
        if live is None:
            response.status_code = 201
        return _with_etag(followup, response)

    @router.patch(
        "/followups/{followup_id}",
        response_model=FollowUp,
        response_model_exclude_none=True,
        responses=_412,
    )
    def patch_followup(
        followup_id: str,
        response: Response,
        patch: Annotated[dict[str, Any], Body(description="A JSON merge patch (RFC 7396).")],
        if_match: IfMatch = None,
    ) -> FollowUp:
        """Change some fields: a JSON merge patch on the stored document."""
        with db.sessions.begin() as session:
            live = check_preconditions(session, followup_id, if_match, None)
            if live is None:
                raise FollowUpNotFound(followup_id)
            merged = merge_patch(dict(live.document), patch)
            if not isinstance(merged, dict) or merged.get("id") != followup_id:
                raise MappingError("the id cannot be changed by a patch", field="id")
            followup = _load(load_followup(merged))
            crm_store.save(session, followup)
        return _with_etag(followup, response)

    @router.delete("/followups/{followup_id}", status_code=204, responses=_412)
    def delete_followup(followup_id: str, if_match: IfMatch = None) -> Response:
        """Delete the follow-up (and, on the next sync, its calendar copies)."""
        with db.sessions.begin() as session:
            if check_preconditions(session, followup_id, if_match, None) is None:
                raise FollowUpNotFound(followup_id)
            crm_store.tombstone(session, followup_id)
        return Response(status_code=204)

    # --- dialog operations, conditional ---------------------------------------------------

    def dialog_for(followup_id: str, if_match: str | None) -> DialogService:
        """A dialog whose store refuses to write over any version but the one matched."""
        if if_match is None:
            return DialogService(db)
        with db.session() as session:
            row = session.get(FollowUpRow, followup_id)
            live = row if row is not None and not row.deleted else None
            etag = changes.etag_of(live.content_hash) if live is not None else None
            if not _etag_matches(if_match, etag):
                current = load_followup(live.document) if live is not None else None
                raise Precondition(followup_id, current)
            assert live is not None
            return DialogService(db, expect_hash=live.content_hash)

    def result(outcome: OperationResult, response: Response) -> OperationResponse:
        if outcome.saved:
            _with_etag(outcome.saved[0], response)
        return OperationResponse(
            summary=outcome.summary, saved=outcome.saved, deleted=outcome.deleted
        )

    def operation(path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return router.post(
            path, response_model=OperationResponse, response_model_exclude_none=True,
            responses=_412,
        )  # fmt: skip

    @operation("/followups/{followup_id}/move")
    def move(
        followup_id: str, body: MoveRequest, response: Response, if_match: IfMatch = None
    ) -> OperationResponse:
        """Later/Earlier: the occurrence on ``date`` moves one day."""
        days = 1 if body.direction == "later" else -1
        return result(
            dialog_for(followup_id, if_match).move(followup_id, body.date, days), response
        )

    @operation("/followups/{followup_id}/add-date")
    def add(
        followup_id: str, body: DateRequest, response: Response, if_match: IfMatch = None
    ) -> OperationResponse:
        """Add a date at the series' time (RDATE)."""
        return result(dialog_for(followup_id, if_match).add_date(followup_id, body.date), response)

    @operation("/followups/{followup_id}/delete-date")
    def delete_date(
        followup_id: str, body: DateRequest, response: Response, if_match: IfMatch = None
    ) -> OperationResponse:
        """Delete the occurrence on ``date`` (EXDATE)."""
        dialog = dialog_for(followup_id, if_match)
        return result(dialog.delete_date(followup_id, body.date), response)

    @operation("/followups/{followup_id}/occurrence")
    def change(
        followup_id: str, body: OccurrenceChange, response: Response, if_match: IfMatch = None
    ) -> OperationResponse:
        """Change only this occurrence, or this and all following (the series splits)."""
        outcome = dialog_for(followup_id, if_match).change(
            followup_id, body.occurrence, mode=body.mode, start=body.start, end=body.end,
            title=body.title, description=body.description, location=body.location,
        )  # fmt: skip
        return result(outcome, response)

    @operation("/followups/{followup_id}/stop")
    def stop(
        followup_id: str, body: StopRequest, response: Response, if_match: IfMatch = None
    ) -> OperationResponse:
        """Stop repeating after ``from``."""
        return result(dialog_for(followup_id, if_match).stop(followup_id, body.from_), response)

    @operation("/followups/{followup_id}/delete-occurrence")
    def delete_occurrence(
        followup_id: str, body: OccurrenceDelete, response: Response, if_match: IfMatch = None
    ) -> OperationResponse:
        """Delete only this occurrence, or this and all following."""
        dialog = dialog_for(followup_id, if_match)
        return result(dialog.delete(followup_id, body.occurrence, body.mode), response)

    # --- the change feed ---------------------------------------------------------------------

    @router.get(
        "/changes",
        response_model=ChangePage,
        responses={
            **_400,
            410: {"description": "The cursor is older than the feed's retention", **_PROBLEMS},
        },
    )
    def read_changes(
        since: Annotated[
            str | None,
            Query(max_length=200, description="A cursor from an earlier answer; none: the start."),
        ] = None,
        followup_id: Annotated[str | None, Query(max_length=255)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> ChangePage:
        """Every change to follow-ups after ``since``, in the order they were committed."""
        with db.session() as session:
            page = changes.read(session, _feed_cursor(since), limit=limit, followup_id=followup_id)
            return ChangePage(
                items=[Change.model_validate(changes.entry_json(row)) for row in page.entries],
                next_cursor=changes.encode_cursor(page.next_seq),
                more=page.more,
            )

    _ = retention  # the daemon prunes; the API only reads (kept for the signature's sake)
    _webhook_routes(router, db)
    from sync.api import direction as api_direction
    from sync.api import status as api_status

    api_status.add_routes(router, db, settings)
    api_direction.add_routes(router, db, settings)
    return router


# --- webhook subscriptions ------------------------------------------------------------------


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


def _webhook_routes(router: APIRouter, db: Database) -> None:
    from sync import webhooks

    def status_of(session: Session, row: webhooks.Subscription) -> WebhookStatus:
        return WebhookStatus.model_validate(webhooks.as_json(webhooks.status(session, row)))

    @router.get("/webhooks", response_model=WebhookPage, responses=_400)
    def list_webhooks(
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> WebhookPage:
        """Every subscription with its delivery state (paused ones say why)."""
        after = _after_id(cursor)
        with db.session() as session:
            query = select(webhooks.Subscription).order_by(webhooks.Subscription.id)
            if after is not None:
                query = query.where(webhooks.Subscription.id > after)
            rows = list(session.scalars(query.limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            return WebhookPage(
                items=[status_of(session, row) for row in rows],
                next_cursor=_list_cursor(rows[-1].id) if more and rows else None,
            )

    @router.post("/webhooks", status_code=201, response_model=WebhookCreated)
    def create_webhook(body: WebhookRequest) -> WebhookCreated:
        """Subscribe: every change committed from now on is POSTed to ``url``, signed."""
        row = webhooks.create(db, url=body.url, secret=body.secret, events=list(body.events))
        with db.session() as session:
            status = status_of(session, row)
        return WebhookCreated(**status.model_dump(), secret=row.secret or "")

    @router.delete(
        "/webhooks/{webhook_id}",
        status_code=204,
        responses={
            404: {"description": "No such subscription", **_PROBLEMS},
            409: {"description": "A config subscription: remove it from the config", **_PROBLEMS},
        },
    )
    def delete_webhook(webhook_id: str) -> Response:
        with db.sessions.begin() as session:
            row = session.get(webhooks.Subscription, webhook_id)
            if row is None:
                return problem(404, "Not found", f"no webhook {webhook_id!r}")
            if row.source == "config":
                return problem(
                    409,
                    "Conflict",
                    f"webhook {webhook_id!r} is in the config file; remove it there",
                )
            session.delete(row)
        return Response(status_code=204)

    @router.post(
        "/webhooks/{webhook_id}/resume",
        response_model=WebhookStatus,
        responses={404: {"description": "No such subscription", **_PROBLEMS}},
    )
    def resume_webhook(webhook_id: str) -> WebhookStatus | JSONResponse:
        """Deliver again from where it stopped (after a pause)."""
        if not webhooks.resume(db, webhook_id):
            return problem(404, "Not found", f"no webhook {webhook_id!r}")
        with db.session() as session:
            row = session.get(webhooks.Subscription, webhook_id)
            assert row is not None
            return status_of(session, row)


def _chunks(
    session: Session,
    after: str | None,
    owner: str | None,
    since: dt.datetime | None,
    limit: int,
) -> Iterator[list[FollowUpRow]]:
    """Live rows by id after ``after``, in chunks (the account filter runs in Python)."""
    size = limit + 1
    while True:
        query = select(FollowUpRow).where(FollowUpRow.deleted.is_(False))
        if after is not None:
            query = query.where(FollowUpRow.id > after)
        if owner is not None:
            query = query.where(FollowUpRow.owner == owner)
        if since is not None:
            query = query.where(FollowUpRow.updated_at >= since)
        rows = list(session.scalars(query.order_by(FollowUpRow.id).limit(size)))
        if not rows:
            return
        yield rows
        if len(rows) < size:
            return
        after = rows[-1].id


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


def install_error_handlers(app: FastAPI) -> None:
    """412, 410 and 400 problems for v1's own exceptions."""

    def precondition(followup_id: str, current: FollowUp | None) -> JSONResponse:
        etag = changes.etag_of(crm_store.content_hash(current)) if current is not None else None
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + "precondition-failed",
            "title": "Precondition failed",
            "status": 412,
            "detail": f"follow-up {followup_id!r} is not the version given; the current one "
            "is in 'current' (null: it does not exist)",
            "etag": etag,
            "current": current.to_json_dict() if current is not None else None,
        }
        return JSONResponse(
            body,
            status_code=412,
            media_type="application/problem+json",
            headers={"ETag": etag} if etag else None,
        )

    @app.exception_handler(Precondition)
    async def precondition_failed(_request: Request, exc: Precondition) -> JSONResponse:
        return precondition(exc.followup_id, exc.current)

    @app.exception_handler(VersionMoved)
    async def version_moved(_request: Request, exc: VersionMoved) -> JSONResponse:
        return precondition(exc.followup_id, exc.current)

    @app.exception_handler(changes.CursorExpired)
    async def cursor_expired(_request: Request, exc: changes.CursorExpired) -> JSONResponse:
        return problem(410, "Gone", str(exc), field="since")

    @app.exception_handler(BadCursor)
    async def bad_cursor(_request: Request, exc: BadCursor) -> JSONResponse:
        return problem(400, "Bad request", str(exc), field=exc.field)
