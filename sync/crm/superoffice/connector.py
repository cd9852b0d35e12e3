"""SuperOffice as a ``CrmConnector``: the archive listing, entity reads and the Agents' writes.

Reads: ``GET /api/v1/Appointment`` (the archive; ``updatedDate`` watermark, per associate),
``GET /api/v1/Appointment/{id}`` (the entity with its ``Recurrence``), the Agents'
``GetAppointmentRecords`` (a series' rows) and ``CalculateDays`` (its rule's dates).
Writes go through the Agents API with an ``UpdateMode`` (OnlyThis, ThisAndForward,
StopRecurrence) and ``If-Unmodified-Since`` set to the row's stamp as last read; a 412 is
``CrmConflict``. SuperOffice documents 412 only for the entity PUT and DELETE, so before a
series write the reconcile pass also compares stamps itself (docs/superoffice-standin.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from mappings.model import FollowUp, FollowUpKind
from sync.config.crm import CrmSettings
from sync.crm.base import (
    ChangedRows,
    CrmCannotExpress,
    CrmConflict,
    CrmError,
    CrmSeries,
    OccurrenceEdit,
    RowStamp,
)
from sync.crm.superoffice import documents
from sync.crm.superoffice.signin import TicketAuth

AGENT = "/api/v1/Agents/Appointment/"
LOGIN_PATH = "/Login/api/PartnerSystemUser/Authenticate"
PAGE = 500
_LISTED = "appointmentId,associateId,recurrenceRuleId,updatedDate"


def client_for(settings: CrmSettings, owner: str) -> httpx.Client:
    """An httpx client signed in as the settings say (Basic, or the system-user ticket)."""
    auth: httpx.Auth
    if settings.auth == "ticket":
        auth = TicketAuth(
            login_url=settings.url.rstrip("/") + LOGIN_PATH,
            app_token=settings.app_token(owner) or "",
            system_token=settings.system_token(owner) or "",
            private_key_pem=settings.private_key(owner) or "",
            context_identifier=settings.context_identifier or "",
        )
    else:
        auth = httpx.BasicAuth(settings.username or "", settings.password(owner) or "")
    return httpx.Client(
        base_url=settings.url.rstrip("/"),
        auth=auth,
        timeout=settings.timeout,
        headers={"Accept": "application/json"},
    )


class SuperOfficeConnector:
    """One SuperOffice tenant, for the associates an account names."""

    def __init__(self, settings: CrmSettings, client: httpx.Client) -> None:
        self.settings = settings
        self.client = client
        self.zone = ZoneInfo(settings.timezone)
        self.tenant = documents.tenant_key(settings.url, settings.context_identifier)

    # --- HTTP ---------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, row: RowStamp | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if row is not None and row.updated:
            headers["If-Unmodified-Since"] = self._http_date(row.updated)
        try:
            response = self.client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise CrmError(f"SuperOffice {method} {path}: {exc}") from exc
        if response.status_code == 412 and row is not None:
            raise CrmConflict(row.row_id)
        if response.status_code >= 400:
            raise CrmError(
                f"SuperOffice {method} {path}: HTTP {response.status_code} {response.text[:200]}"
            )
        return response

    def _http_date(self, local_stamp: str) -> str:
        aware = documents.parse_stamp(local_stamp).replace(tzinfo=self.zone)
        return format_datetime(aware.astimezone(dt.UTC), usegmt=True)

    def _listing(self, condition: str) -> list[dict[str, Any]]:
        """Every archive row matching ``condition``, page by page."""
        found: list[dict[str, Any]] = []
        skip = 0
        while True:
            params = {
                "$select": _LISTED,
                "$filter": condition,
                "$orderBy": "updatedDate",
                "$top": str(PAGE),
                "$skip": str(skip),
            }
            body = self._call("GET", "/api/v1/Appointment", params=params).json()
            found.extend(body.get("value") or [])
            if not body.get("odata.nextLink"):
                return found
            skip += PAGE

    def _for_associates(self, condition: str | None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        associates: list[int | None] = list(self.settings.associates) or [None]
        for associate in associates:
            parts = [f"associateId eq {associate}"] if associate is not None else []
            if condition:
                parts.append(condition)
            rows.extend(self._listing(" and ".join(parts)))
        return rows

    # --- reading ------------------------------------------------------------------------

    def owns(self, followup_id: str) -> bool:
        return documents.parse_followup_id(followup_id, self.tenant) is not None

    def stamp_time(self, updated: str) -> dt.datetime:
        return documents.parse_stamp(updated).replace(tzinfo=self.zone).astimezone(dt.UTC)

    def changed_since(self, watermark: str | None) -> ChangedRows:
        # ``ge``: SuperOffice stamps have whole seconds; a row written in the watermark's second
        # after the last read would be missed by ``gt``. Rows seen before are recognised by
        # their stamp in the reconcile pass.
        condition = f"updatedDate ge '{watermark}'" if watermark else None
        followups: dict[str, dict[str, str]] = {}
        newest = watermark
        for row in self._for_associates(condition):
            followup_id = documents.followup_id_for(
                int(row["appointmentId"]), int(row.get("recurrenceRuleId") or 0), self.tenant
            )
            followups.setdefault(followup_id, {})[str(row["appointmentId"])] = row["updatedDate"]
            if newest is None or row["updatedDate"] > newest:
                newest = row["updatedDate"]
        return ChangedRows(followups, newest)

    def all_row_ids(self) -> dict[str, str]:
        return {
            str(row["appointmentId"]): documents.followup_id_for(
                int(row["appointmentId"]), int(row.get("recurrenceRuleId") or 0), self.tenant
            )
            for row in self._for_associates(None)
        }

    def _entity(self, row_id: int | str) -> dict[str, Any] | None:
        response = self.client.get(f"/api/v1/Appointment/{row_id}")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise CrmError(f"SuperOffice GET appointment {row_id}: HTTP {response.status_code}")
        entity: dict[str, Any] = response.json()
        return entity

    def read_series(self, followup_id: str, known: Iterable[RowStamp]) -> CrmSeries | None:
        parsed = documents.parse_followup_id(followup_id, self.tenant)
        if parsed is None:
            return None
        what, number = parsed
        if what == "row":
            entity = self._entity(number)
            if entity is None or entity["Recurrence"].get("IsRecurrence"):
                return None
            followup, row = documents.single_followup(entity, self.settings.timezone, self.tenant)
            return CrmSeries(followup, (row,))
        rows: list[dict[str, Any]] = self._call(
            "POST",
            AGENT + "GetAppointmentRecords",
            json={"MotherId": 0, "RecurrenceRuleId": number},
        ).json()
        if not rows:
            return None
        entity = self._entity(rows[0]["AppointmentId"])
        if entity is None:
            return None
        calculated = self._call(
            "POST", AGENT + "CalculateDays", json={"AppointmentEntity": entity}
        ).json()
        rule_dates = [documents.parse_stamp(d["Date"]) for d in calculated.get("Dates") or []]
        if not rule_dates:
            return None
        stamps = {
            str(row["appointmentId"]): str(row["updatedDate"])
            for row in self._listing(f"recurrenceRuleId eq {number}")
        }
        followup, row_stamps = documents.series_followup(
            entity, rows, rule_dates, known, self.settings.timezone, stamps, self.tenant
        )
        return CrmSeries(followup, row_stamps)

    def followup_of_row(self, row_id: str) -> str | None:
        entity = self._entity(row_id)
        if entity is None:
            return None
        recurrence = entity.get("Recurrence") or {}
        rule_id = int(recurrence.get("RecurrenceId") or 0) if recurrence.get("IsRecurrence") else 0
        return documents.followup_id_for(int(entity["AppointmentId"]), rule_id, self.tenant)

    # --- writing ------------------------------------------------------------------------

    def _local(self, moment: dt.datetime | dt.date) -> str:
        """A calendar time as the tenant's local stamp (SuperOffice keeps no offset)."""
        if isinstance(moment, dt.datetime) and moment.tzinfo is not None:
            moment = moment.astimezone(self.zone)
        return documents.stamp(moment)

    def create_followup(self, followup: FollowUp) -> str:
        if followup.ical_recurrence:
            raise CrmCannotExpress(f"{followup.id}: its rule is none of SuperOffice's patterns")
        associates = [str(a) for a in self.settings.associates]
        owner = followup.owner or (associates[0] if associates else None)
        entity: dict[str, Any] = {
            "AppointmentId": 0,
            "Title": followup.title,
            "Description": followup.description or "",
            "Location": followup.location or "",
            "StartDate": self._local(followup.start),
            "EndDate": self._local(followup.end),
        }
        if not isinstance(followup.start, dt.datetime):
            entity["IsAlldayEvent"] = True
        if owner is not None and owner.isdigit():
            entity["Associate"] = {"AssociateId": int(owner)}
        if followup.kind == FollowUpKind.task:
            entity["Type"] = "inChecklist"
        if followup.recurrence is not None:
            entity["Recurrence"] = followup.recurrence.model_dump(
                mode="json", exclude_none=True
            ) | {"IsRecurrence": True, "StartDate": entity["StartDate"]}
        saved: dict[str, Any] = self._call(
            "POST", AGENT + "Save", json={"AppointmentEntity": entity, "UpdateMode": "OnlyThis"}
        ).json()
        recurrence = saved.get("Recurrence") or {}
        rule_id = int(recurrence.get("RecurrenceId") or 0) if recurrence.get("IsRecurrence") else 0
        return documents.followup_id_for(int(saved["AppointmentId"]), rule_id, self.tenant)

    def _save(self, row: RowStamp, edit: OccurrenceEdit, mode: str) -> dict[str, Any]:
        entity = self._entity(row.row_id)
        if entity is None:
            raise CrmConflict(row.row_id)  # deleted in the CRM meanwhile
        if edit.start is not None:
            entity["StartDate"] = documents.stamp(edit.start)
            # A DATE (a client's "all day") is the entity's all-day flag; a time clears it.
            entity["IsAlldayEvent"] = not isinstance(edit.start, dt.datetime)
        if edit.end is not None:
            entity["EndDate"] = documents.stamp(edit.end)
        for key, value in (
            ("Title", edit.title),
            ("Description", edit.description),
            ("Location", edit.location),
        ):
            if value is not None:
                entity[key] = value
        if edit.recurrence is not None:
            entity["Recurrence"] = edit.recurrence.model_dump(mode="json", exclude_none=True) | {
                "IsRecurrence": True,
                "StartDate": entity["StartDate"],
            }
        saved: dict[str, Any] = self._call(
            "POST", AGENT + "Save", row=row, json={"AppointmentEntity": entity, "UpdateMode": mode}
        ).json()
        return saved

    def edit_occurrence(self, row: RowStamp, edit: OccurrenceEdit) -> None:
        self._save(row, edit, "OnlyThis")

    def edit_this_and_following(self, row: RowStamp, edit: OccurrenceEdit) -> str:
        saved = self._save(row, edit, "ThisAndForward")
        recurrence = saved.get("Recurrence") or {}
        rule_id = int(recurrence.get("RecurrenceId") or 0) if recurrence.get("IsRecurrence") else 0
        return documents.followup_id_for(int(saved["AppointmentId"]), rule_id, self.tenant)

    def stop_repeating(self, row: RowStamp) -> None:
        self._save(row, OccurrenceEdit(), "StopRecurrence")

    def cancel_occurrence(self, row: RowStamp) -> None:
        self._call(
            "POST",
            AGENT + "Delete",
            row=row,
            json={"AppointmentId": int(row.row_id), "UpdateMode": "OnlyThis"},
        )

    def complete_occurrence(self, row: RowStamp) -> None:
        self._call(
            "POST",
            AGENT + "UpdateAppointmentWithMode",
            row=row,
            json={"Id": int(row.row_id), "Status": "Completed", "UpdateMode": "OnlyThis"},
        )

    def delete_followup(self, row: RowStamp) -> None:
        self._call(
            "POST",
            AGENT + "Delete",
            row=row,
            json={"AppointmentId": int(row.row_id), "UpdateMode": "ThisAndForward"},
        )

    def close(self) -> None:
        self.client.close()


def open_connector(settings: CrmSettings, owner: str) -> SuperOfficeConnector:
    return SuperOfficeConnector(settings, client_for(settings, owner))
