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

The routes live on routers this factory assembles: ``sync.api.unversioned`` (the table
above), ``sync.api.v1`` and ``sync.api.v1_feed`` (``/v1``), ``sync.api.status`` (the
service's state and controls); their bodies are in ``sync.api.schemas``.

Every error is ``application/problem+json`` (RFC 9457, ``sync.api.problems``) with
``type``, ``title``, ``status``, ``detail`` and, when one field is at fault, ``field`` named
the way the document names it (``recurrence.WeekPattern.Cycle``, ``end``, ``date``). Bad input is a
4xx, never a 500: the mapper's own validation decides, so the API cannot accept a
document the sync worker would later choke on.
"""

from __future__ import annotations

import secrets

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sync.api import direction, problems, status, unversioned, v1, v1_feed
from sync.api.docs import serve_docs_offline
from sync.api.schemas import describe_local_times
from sync.config import DEFAULT_MAX_BODY_BYTES, Settings
from sync.errors import ConfigError
from sync.state.db import Database


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
        responses=problems.COMMON_ERRORS,
        docs_url=None,  # served from local files instead: sync.api.docs
        redoc_url=None,
        max_body_size=max_body_bytes,
    )
    serve_docs_offline(app)
    problems.install_error_handlers(app)
    v1.install_error_handlers(app)
    describe_local_times(app)
    # In this order, which is the order of the paths in the OpenAPI document.
    app.include_router(v1.create_router(db, settings))
    app.include_router(v1_feed.create_router(db))
    app.include_router(status.create_router(db, settings))
    app.include_router(direction.create_router(db, settings))
    app.include_router(unversioned.create_router(db, settings))
    return app
