"""The unversioned routes: follow-ups and their recurrence dialog (``/followups``, ``/dates``).

The first API, kept as it is for the integrations that use it (``sync.api.app`` lists the
routes); ``/v1`` (``sync.api.v1``) adds pages, versions and the change feed. Each route is
a thin call of ``sync.dialog``: the dialog's date list with conflicts, or one of its
stored edits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Response

from mappings.errors import MappingError
from mappings.model import FollowUp
from sync.api.problems import PROBLEM_RESPONSE
from sync.api.schemas import (
    DateRequest,
    MoveRequest,
    OccurrenceChange,
    OccurrenceDelete,
    OperationResponse,
    StopRequest,
    ValidateRequest,
    load_body,
)
from sync.config import Account, Settings
from sync.dialog import (
    DateInfo,
    DialogService,
    OperationResult,
    account_for,
    calculate_dates,
    validate_dates,
)
from sync.errors import ConfigError
from sync.state.db import Database
from sync.state.followups import FollowUpStore

Handler = Callable[..., OperationResponse]


def create_router(db: Database, settings: Settings | None) -> APIRouter:
    """The routes on one database; ``settings`` give the calendars conflicts are checked in."""
    router = APIRouter()
    store = FollowUpStore(db)
    dialog = DialogService(db)

    def conflict_account(followup: FollowUp, name: str | None) -> Account | None:
        if settings is None or not settings.accounts:
            if name is not None:
                raise ConfigError(f"no account named {name!r} is configured")
            return None
        return account_for(settings, followup, name)

    # --- CRUD -------------------------------------------------------------------------

    @router.get("/followups", response_model=list[FollowUp], response_model_exclude_none=True)
    def list_followups(
        owner: Annotated[str | None, Query(max_length=255)] = None,
    ) -> list[FollowUp]:
        """Every stored follow-up, or the owner's."""
        return [f for f in store.all() if owner is None or f.owner == owner]

    @router.post(
        "/followups",
        status_code=201,
        response_model=FollowUp,
        response_model_exclude_none=True,
        responses={409: {"description": "The id exists", **PROBLEM_RESPONSE}},
    )
    def create_followup(body: FollowUp, response: Response) -> FollowUp:
        """Store a new follow-up; the next sync takes it to the calendar."""
        followup = load_body(body)
        if store.get(followup.id) is not None:
            raise HTTPException(409, f"follow-up {followup.id!r} exists; PUT it to replace it")
        store.put(followup)
        response.headers["Location"] = f"/followups/{quote(followup.id, safe='')}"
        return followup

    @router.get(
        "/followups/{followup_id}", response_model=FollowUp, response_model_exclude_none=True
    )
    def get_followup(followup_id: str) -> FollowUp:
        return dialog.get(followup_id)

    @router.put(
        "/followups/{followup_id}", response_model=FollowUp, response_model_exclude_none=True
    )
    def put_followup(followup_id: str, body: FollowUp) -> FollowUp:
        """Create or replace; the body's id must be the path's."""
        if body.id != followup_id:
            raise MappingError(f"is {body.id!r} but the path says {followup_id!r}", field="id")
        followup = load_body(body)
        store.put(followup)
        return followup

    @router.delete("/followups/{followup_id}", status_code=204)
    def delete_followup(followup_id: str) -> Response:
        """Delete the follow-up (and, on the next sync, its calendar copies)."""
        dialog.delete(followup_id)
        return Response(status_code=204)

    # --- dates and conflicts -------------------------------------------------------------

    @router.post("/followups/{followup_id}/dates", response_model=list[DateInfo])
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

    @router.post("/dates/calculate", response_model=list[DateInfo])
    def calculate(
        body: FollowUp,
        conflicts: bool = True,
        account: Annotated[str | None, Query(max_length=255)] = None,
    ) -> list[DateInfo]:
        """CalculateDays for a follow-up that is not stored (yet)."""
        followup = load_body(body)
        return calculate_dates(
            followup, db=db, account=conflict_account(followup, account) if conflicts else None,
            conflicts=conflicts,
        )  # fmt: skip

    @router.post("/dates/validate", response_model=list[DateInfo])
    def validate(
        body: ValidateRequest, account: Annotated[str | None, Query(max_length=255)] = None
    ) -> list[DateInfo]:
        """ValidateDays: conflicts for a hand-edited list of dates at the follow-up's time."""
        followup = load_body(body.followup)
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
        return router.post(path, response_model=OperationResponse, response_model_exclude_none=True)

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

    return router
