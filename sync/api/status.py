"""API v1: what the sync is doing, and the controls a CRM admin expects.

``GET /v1/status``                       accounts (last and next pass, failures, back-off,
                                         paused) and webhook subscriptions
``GET /v1/conflicts``                    conflicts the sync resolved by policy, with the
                                         value kept and the value lost (paged)
``POST /v1/conflicts/{id}/resolve``      keep-crm / keep-calendar / edit: stored as a CRM
                                         change, which the next pass takes to the calendar
``POST /v1/accounts/{name}/sync``        ask for a pass now (the daemon queues it on its
                                         next CRM poll; it skips the schedule and back-off)
``POST /v1/accounts/{name}/reset``       forget the links to the calendar; the next pass
                                         pairs follow-ups and resources again by UID
``POST /v1/accounts/{name}/pause``       no pass runs for the account until resumed
``POST /v1/accounts/{name}/resume``

The controls are rows in the shared database (``sync.api.controls``), so they work whichever
process serves the API and whichever daemon holds the account.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mappings.model import FollowUp
from sync import webhooks
from sync.api import controls
from sync.api.paging import BadCursor, after_id, list_cursor
from sync.api.problems import PROBLEM_RESPONSE, problem
from sync.api.schemas import load_body
from sync.config import Settings, backoff_seconds
from sync.state import directions, repo
from sync.state import followups as crm_store
from sync.state.db import CollectionState, Database, as_utc

_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such account in the config", **PROBLEM_RESPONSE}
}


class AccountState(BaseModel):
    name: str
    paused: bool = Field(description="Paused over the API: no pass runs until resumed.")
    direction: str = Field(
        description="both, to-calendar or to-crm (one-way); GET /v1/accounts/NAME/direction."
    )
    last_run: dt.datetime | None
    last_success: dt.datetime | None
    last_result: str | None
    next_run: dt.datetime | None
    consecutive_failures: int
    backoff_until: dt.datetime | None = Field(
        description="A failing account is not tried before this (null: not backing off)."
    )
    conflicts: int


class WebhookState(BaseModel):
    id: str
    url: str
    paused: bool
    failures: int
    last_error: str | None
    backlog: int


class ServiceStatus(BaseModel):
    accounts: list[AccountState]
    webhooks: list[WebhookState]


class Conflict(BaseModel):
    id: int
    account: str
    followup_id: str
    occurred_at: dt.datetime
    part: str = Field(description="What both sides changed (a field, an occurrence).")
    policy: str
    winner: str = Field(description="crm or calendar: whose value was kept.")
    kept_value: Any = None
    lost_value: Any = None
    current: dict[str, Any] | None = Field(description="The follow-up as stored now.")
    resolution: str | None = Field(
        default=None, description="keep-crm, keep-calendar or edit, once an admin decided."
    )


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["keep-crm", "keep-calendar", "edit"]
    followup: FollowUp | None = Field(
        default=None, description="With `edit`: the follow-up as it should be."
    )


class Resolved(BaseModel):
    conflict: int
    action: str
    followup: FollowUp = Field(description="Stored now; the next pass takes it to the calendar.")


class ConflictPage(BaseModel):
    items: list[Conflict]
    next_cursor: str | None


def _backoff_until(settings: Settings | None, state: CollectionState) -> dt.datetime | None:
    failures = state.consecutive_failures or 0
    account = settings.accounts.get(state.account) if settings is not None else None
    if not failures or account is None or state.last_run_at is None:
        return None
    cap = settings.daemon.max_backoff_seconds if settings is not None else 900.0
    wait = backoff_seconds(account, failures, cap)
    return as_utc(state.last_run_at) + dt.timedelta(seconds=wait)


def create_router(db: Database, settings: Settings | None) -> APIRouter:
    """``/v1/status``, ``/v1/conflicts`` and the account controls on one database."""
    router = APIRouter(prefix="/v1", tags=["v1"])
    configured = set(settings.accounts) if settings is not None else set()

    @router.get("/status", response_model=ServiceStatus)
    def service_status() -> ServiceStatus:
        """Every account's passes and every webhook subscription's delivery."""
        with db.session() as session:
            states = repo.collection_states(session)
            conflicts = repo.conflict_counts(session)
            paused = controls.paused_accounts(session)
            one_way = directions.overrides(session)
            accounts = []
            for name in sorted(configured | set(states)):
                state = states.get(name)
                accounts.append(
                    AccountState(
                        name=name,
                        paused=name in paused,
                        direction=one_way.get(name) or _configured_direction(settings, name),
                        last_run=_utc(state.last_run_at if state else None),
                        last_success=_utc(state.last_success_at if state else None),
                        last_result=state.last_result if state else "never run",
                        next_run=_utc(state.next_run_at if state else None),
                        consecutive_failures=(state.consecutive_failures or 0) if state else 0,
                        backoff_until=_backoff_until(settings, state) if state else None,
                        conflicts=conflicts.get(name, 0),
                    )
                )
            hooks = []
            for row in webhooks.subscriptions(session):
                shown = webhooks.status(session, row)
                hooks.append(
                    WebhookState(
                        id=shown.id, url=shown.url, paused=shown.paused, failures=shown.failures,
                        last_error=shown.last_error, backlog=shown.backlog,
                    )
                )  # fmt: skip
        return ServiceStatus(accounts=accounts, webhooks=hooks)

    @router.get(
        "/conflicts",
        response_model=ConflictPage,
        responses={
            400: {"description": "A cursor this service did not hand out", **PROBLEM_RESPONSE}
        },
    )
    def list_conflicts(
        account: Annotated[str | None, Query(max_length=255)] = None,
        followup_id: Annotated[str | None, Query(max_length=255)] = None,
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> ConflictPage:
        """Newest first: what each side had, and which one the policy kept."""
        position = after_id(cursor)
        if position is not None and not position.isdigit():
            raise BadCursor(f"{cursor!r} is not a cursor of this list", "cursor")
        before = int(position) if position is not None else None
        with db.session() as session:
            rows = repo.conflicts_newest_first(
                session, before_id=before, account=account, followup_id=followup_id,
                limit=limit + 1,
            )  # fmt: skip
            more = len(rows) > limit
            rows = rows[:limit]
            items = []
            for row in rows:
                stored = crm_store.live_row(session, row.followup_id)
                items.append(
                    Conflict(
                        id=row.id, account=row.account, followup_id=row.followup_id,
                        occurred_at=as_utc(row.occurred_at), part=row.part, policy=row.policy,
                        winner=row.winner, kept_value=row.kept_value, lost_value=row.lost_value,
                        current=dict(stored.document) if stored is not None else None,
                        resolution=controls.resolution_of(session, row.id),
                    )
                )  # fmt: skip
        next_cursor = list_cursor(str(rows[-1].id)) if more and rows else None
        return ConflictPage(items=items, next_cursor=next_cursor)

    @router.post(
        "/conflicts/{conflict_id}/resolve",
        response_model=Resolved,
        response_model_exclude_none=True,
        responses={404: {"description": "No such conflict", **PROBLEM_RESPONSE}},
    )
    def resolve_conflict(conflict_id: int, body: ResolveRequest) -> Resolved | JSONResponse:
        """Decide a conflict: keep the CRM's value, the calendar's, or an edited follow-up."""
        edited = load_body(body.followup) if body.followup is not None else None
        try:
            chosen = controls.resolve(db, conflict_id, body.action, edited)
        except LookupError:
            return problem(404, "Not found", f"no conflict {conflict_id}")
        except controls.NotResolvable as exc:
            return problem(422, "Invalid input", str(exc), field="action")
        return Resolved(conflict=conflict_id, action=body.action, followup=chosen)

    def known(name: str) -> JSONResponse | None:
        if name not in configured:
            return problem(404, "Not found", f"no account named {name!r} is configured")
        return None

    @router.post(
        "/accounts/{name}/sync",
        status_code=202,
        responses={**_404, 409: {"description": "The account is paused", **PROBLEM_RESPONSE}},
    )
    def sync_now(name: str) -> JSONResponse:
        """Ask the daemon for a pass of this account now (409 while it is paused)."""
        missing = known(name)
        if missing is not None:
            return missing
        with db.session() as session:
            if controls.is_paused(session, name):
                return problem(409, "Conflict", f"account {name!r} is paused; resume it first")
        controls.request_sync(db, name)
        return JSONResponse({"account": name, "requested": True}, status_code=202)

    @router.post("/accounts/{name}/reset", status_code=202, responses=_404)
    def reset(name: str) -> JSONResponse:
        """Forget the account's links to its calendar; the next pass re-links by UID.

        Allowed while paused: the reset is then the first thing the account does when
        it is resumed.
        """
        missing = known(name)
        if missing is not None:
            return missing
        controls.request_reset(db, name)
        return JSONResponse({"account": name, "reset": "requested"}, status_code=202)

    @router.post("/accounts/{name}/pause", responses=_404)
    def pause(name: str) -> JSONResponse:
        """No pass runs for this account until it is resumed (a pass under way finishes)."""
        missing = known(name)
        if missing is not None:
            return missing
        controls.set_paused(db, name, True)
        return JSONResponse({"account": name, "paused": True})

    @router.post("/accounts/{name}/resume", responses=_404)
    def resume(name: str) -> JSONResponse:
        missing = known(name)
        if missing is not None:
            return missing
        controls.set_paused(db, name, False)
        return JSONResponse({"account": name, "paused": False})

    return router


def _configured_direction(settings: Settings | None, name: str) -> str:
    account = settings.accounts.get(name) if settings is not None else None
    return account.direction if account is not None else "both"


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return as_utc(value) if value is not None else None
