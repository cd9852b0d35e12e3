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
* **The change feed.** ``GET /v1/changes?since=CURSOR`` (``sync.api.v1_feed``): every
  change in commit order, with its origin, what changed and the new ETag; 410 once
  retention dropped the cursor.
* **Webhooks and status**: their routes are ``sync.api.v1_feed``'s (with the change feed)
  and ``sync.api.status``'s; the bodies are in ``sync.api.schemas``.

``PATCH`` takes a JSON merge patch (RFC 7396, ``application/merge-patch+json`` or plain
JSON): eight lines of code, written here rather than pulling in a library for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp
from sync.api.paging import DEFAULT_PAGE, MAX_PAGE, BadCursor, after_id, list_cursor
from sync.api.problems import PROBLEM_BASE, PROBLEM_RESPONSE, problem
from sync.api.schemas import (
    BAD_CURSOR,
    ETAG_HEADER,
    PRECONDITION_FAILED,
    DateRequest,
    Entry,
    FollowUpPage,
    IfMatch,
    IfNoneMatch,
    MoveRequest,
    OccurrenceChange,
    OccurrenceDelete,
    OperationResponse,
    StopRequest,
    load_body,
)
from sync.config import Settings
from sync.dialog import DialogService, FollowUpNotFound, OperationResult, VersionMoved
from sync.state import changes, repo
from sync.state import followups as crm_store
from sync.state.db import Database, FollowUpRow, as_utc


class Precondition(Exception):
    """412: a conditional request found another version (``current``: the live document)."""

    def __init__(self, followup_id: str, current: FollowUp | None) -> None:
        super().__init__(followup_id)
        self.followup_id = followup_id
        self.current = current


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
    live = crm_store.live_row(session, followup_id)
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


def _entry(row: FollowUpRow) -> Entry:
    return Entry(
        etag=changes.etag_of(row.content_hash),
        updated_at=as_utc(row.updated_at),
        followup=load_followup(row.document),
    )


def _with_etag(followup: FollowUp, response: Response) -> FollowUp:
    response.headers["ETag"] = changes.etag_of(crm_store.content_hash(followup))
    return followup


# --- the router --------------------------------------------------------------------------------


def create_router(db: Database, settings: Settings | None) -> APIRouter:
    """``/v1/followups``: pages, reads and conditional writes, and the dialog operations."""
    router = APIRouter(prefix="/v1", tags=["v1"])

    def in_account(name: str) -> Callable[[Session, list[FollowUpRow]], list[FollowUpRow]]:
        """Rows of the account: synced to it, made in its calendar, or selected by it."""
        account = settings.accounts.get(name) if settings is not None else None

        def keep(session: Session, rows: list[FollowUpRow]) -> list[FollowUpRow]:
            synced = repo.synced_followup_ids(session, name, [row.id for row in rows])
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

    @router.get("/followups", response_model=FollowUpPage, responses=BAD_CURSOR)
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
        after = after_id(cursor)
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
                next_cursor=list_cursor(items[-1].id) if more and items else None,
                changes_cursor=changes.encode_cursor(feed_position),
            )

    @router.post(
        "/followups",
        status_code=201,
        response_model=FollowUp,
        response_model_exclude_none=True,
        responses={409: {"description": "The id exists", **PROBLEM_RESPONSE}},
    )
    def create_followup(body: FollowUp, response: Response) -> FollowUp | JSONResponse:
        """Store a new follow-up (409 if the id exists)."""
        followup = load_body(body)
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
        responses={200: {"headers": ETAG_HEADER}, 304: {"description": "Not modified"}},
    )
    def get_followup(
        followup_id: str, response: Response, if_none_match: IfNoneMatch = None
    ) -> Any:
        with db.session() as session:
            row = crm_store.live_row(session, followup_id)
            if row is None:
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
        responses={201: {"description": "Created", "model": FollowUp}, **PRECONDITION_FAILED},
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
        followup = load_body(body)
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
        responses=PRECONDITION_FAILED,
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
            followup = load_body(load_followup(merged))
            crm_store.save(session, followup)
        return _with_etag(followup, response)

    @router.delete("/followups/{followup_id}", status_code=204, responses=PRECONDITION_FAILED)
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
            live = crm_store.live_row(session, followup_id)
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
            responses=PRECONDITION_FAILED,
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

    return router


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
        rows = crm_store.live_rows_after(
            session, after, owner=owner, updated_since=since, limit=size
        )
        if not rows:
            return
        yield rows
        if len(rows) < size:
            return
        after = rows[-1].id


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
