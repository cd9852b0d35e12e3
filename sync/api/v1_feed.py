"""API v1: the change feed and webhook subscriptions (``/v1/changes``, ``/v1/webhooks``).

What a CRM adapter reads to follow every change after a full listing of
``/v1/followups`` (``sync.api.v1``): the feed (``sync.state.changes``) a page at a time
from a cursor, or pushed to it, signed, by a webhook subscription (``sync.webhooks``).
Subscriptions from the config file are listed here but removed only there.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from sync import webhooks
from sync.api.paging import DEFAULT_PAGE, MAX_PAGE, after_id, feed_position, list_cursor
from sync.api.problems import PROBLEM_RESPONSE, problem
from sync.api.schemas import (
    BAD_CURSOR,
    Change,
    ChangePage,
    WebhookCreated,
    WebhookPage,
    WebhookRequest,
    WebhookStatus,
)
from sync.state import changes
from sync.state.db import Database


def create_router(db: Database) -> APIRouter:
    """``/v1/changes`` and ``/v1/webhooks`` on one database."""
    router = APIRouter(prefix="/v1", tags=["v1"])

    @router.get(
        "/changes",
        response_model=ChangePage,
        responses={
            **BAD_CURSOR,
            410: {
                "description": "The cursor is older than the feed's retention",
                **PROBLEM_RESPONSE,
            },
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
            page = changes.read(session, feed_position(since), limit=limit, followup_id=followup_id)
            return ChangePage(
                items=[Change.model_validate(changes.entry_json(row)) for row in page.entries],
                next_cursor=changes.encode_cursor(page.next_seq),
                more=page.more,
            )

    def status_of(session: Session, row: webhooks.Subscription) -> WebhookStatus:
        return WebhookStatus.model_validate(webhooks.as_json(webhooks.status(session, row)))

    @router.get("/webhooks", response_model=WebhookPage, responses=BAD_CURSOR)
    def list_webhooks(
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> WebhookPage:
        """Every subscription with its delivery state (paused ones say why)."""
        after = after_id(cursor)
        with db.session() as session:
            rows = webhooks.subscriptions(session, after=after, limit=limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            return WebhookPage(
                items=[status_of(session, row) for row in rows],
                next_cursor=list_cursor(rows[-1].id) if more and rows else None,
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
            404: {"description": "No such subscription", **PROBLEM_RESPONSE},
            409: {
                "description": "A config subscription: remove it from the config",
                **PROBLEM_RESPONSE,
            },
        },
    )
    def delete_webhook(webhook_id: str) -> Response:
        with db.sessions.begin() as session:
            outcome = webhooks.remove(session, webhook_id)
        if outcome == "missing":
            return problem(404, "Not found", f"no webhook {webhook_id!r}")
        if outcome == "config":
            return problem(
                409,
                "Conflict",
                f"webhook {webhook_id!r} is in the config file; remove it there",
            )
        return Response(status_code=204)

    @router.post(
        "/webhooks/{webhook_id}/resume",
        response_model=WebhookStatus,
        responses={404: {"description": "No such subscription", **PROBLEM_RESPONSE}},
    )
    def resume_webhook(webhook_id: str) -> WebhookStatus | JSONResponse:
        """Deliver again from where it stopped (after a pause)."""
        if not webhooks.resume(db, webhook_id):
            return problem(404, "Not found", f"no webhook {webhook_id!r}")
        with db.session() as session:
            row = webhooks.subscription(session, webhook_id)
            assert row is not None
            return status_of(session, row)

    return router
