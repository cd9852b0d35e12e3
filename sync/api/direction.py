"""API v1: one-way mode per account, a control next to pause and resume.

``GET /v1/accounts/{name}/direction``    the direction the next pass uses, and where it
                                         comes from (the config, or set here)
``PUT /v1/accounts/{name}/direction``    ``{"direction": "to-calendar"}`` (or ``to-crm``,
                                         ``both``); ``null`` goes back to the config's

What each direction does is in ``sync.engine.direction``. The choice is a row in the
shared database (``sync.state.directions``), so it holds for whichever daemon takes the
account, and for a ``followup-sync sync`` run too; a pass is asked for at once, so the
copy is corrected without waiting for the account's interval.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sync.api import controls
from sync.api.problems import PROBLEM_RESPONSE, problem
from sync.config import Settings
from sync.policies import SyncDirection
from sync.state import directions
from sync.state.db import Database

_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such account in the config", **PROBLEM_RESPONSE}
}


class DirectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    direction: SyncDirection | None = Field(
        description="both, to-calendar (the CRM is the master) or to-crm (the calendar is "
        "the master); null: the config's again."
    )


class AccountDirection(BaseModel):
    account: str
    direction: SyncDirection = Field(description="What the account's next pass uses.")
    configured: SyncDirection = Field(description="The config's `direction` for the account.")
    source: str = Field(description="`api` when set here, `config` otherwise.")


def create_router(db: Database, settings: Settings | None) -> APIRouter:
    """The direction of each configured account, read and set."""
    router = APIRouter(prefix="/v1", tags=["v1"])
    accounts = dict(settings.accounts) if settings is not None else {}

    def shown(name: str) -> AccountDirection:
        configured = accounts[name].direction
        with db.session() as session:
            chosen = directions.override(session, name)
        return AccountDirection(
            account=name,
            direction=chosen or configured,
            configured=configured,
            source="api" if chosen is not None else "config",
        )

    def unknown(name: str) -> JSONResponse:
        return problem(404, "Not found", f"no account named {name!r} is configured")

    @router.get("/accounts/{name}/direction", response_model=AccountDirection, responses=_404)
    def get_direction(name: str) -> AccountDirection | JSONResponse:
        """Which way the account syncs now."""
        if name not in accounts:
            return unknown(name)
        return shown(name)

    @router.put("/accounts/{name}/direction", response_model=AccountDirection, responses=_404)
    def set_direction(name: str, body: DirectionRequest) -> AccountDirection | JSONResponse:
        """Make the account one-way (or two-way again); the next pass is asked for at once."""
        if name not in accounts:
            return unknown(name)
        with db.sessions.begin() as session:
            directions.set_override(session, name, body.direction)
        controls.request_sync(db, name)
        return shown(name)

    return router
