"""The SuperOffice endpoints the stand-in serves, as SuperOffice documents them.

One method per operation of the vendored descriptions (openapi/README.md). Each takes the signed-in
associate, the query, the lower-cased headers and the parsed JSON body (then any path ids), and
returns (status, JSON body or None, extra headers), or raises Reply for an error status.
Conditional headers: GET answers 304 to If-Modified-Since; PUT and DELETE answer 412 to
If-Unmodified-Since (documented); the Agents' writes honour If-Unmodified-Since too (*inferred*:
the descriptions do not say, see docs/reference/superoffice-standin.md).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from sync.testing.superoffice import carriers
from sync.testing.superoffice.recurrence import RecurrenceError, expand, parse_time
from sync.testing.superoffice.tenant import (
    STATUS_NUMBERS,
    TYPE_NUMBERS,
    NotFound,
    PreconditionFailed,
    Row,
    Tenant,
)
from sync.testing.superoffice.webhooks import Webhook, WebhookDispatcher

Result = tuple[int, Any, dict[str, str]]


class Reply(Exception):
    """Answer the current request with this status and JSON body (an error, or a bare status)."""

    def __init__(self, status: int, body: Any = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def http_date(value: str | None) -> datetime | None:
    """An If-(Un)Modified-Since value: an HTTP date (or, leniently, ISO 8601) as naive UTC."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.replace(tzinfo=None)


class Routes:
    """The operations, over one tenant and its webhooks."""

    def __init__(
        self, tenant: Tenant, webhooks: WebhookDispatcher, base_url: Callable[[], str]
    ) -> None:
        self.tenant = tenant
        self.webhooks = webhooks
        self._base_url = base_url
        self._webhook_ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return self._base_url()

    def dispatch(
        self,
        method: str,
        path: str,
        associate: int,
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> Result:
        for route_method, pattern, action in self.table():
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                result: Result = action(associate, query, headers, body, *match.groups())
                return result
        raise Reply(404, {"Error": "NotFound", "Message": f"{method} {path}"})

    def table(self) -> list[tuple[str, str, Callable[..., tuple[int, Any, dict[str, str]]]]]:
        agent = "/api/v1/Agents/Appointment/"
        return [
            ("GET", r"/api/v1/Appointment", self._list),
            ("POST", r"/api/v1/Appointment", self._post_entity),
            ("GET", r"/api/v1/Appointment/(\d+)", self._get_entity),
            ("PUT", r"/api/v1/Appointment/(\d+)", self._put_entity),
            ("DELETE", r"/api/v1/Appointment/(\d+)", self._delete_entity),
            ("POST", agent + "GetAppointmentEntity", self._agent_get),
            ("POST", agent + "GetAppointmentRecords", self._agent_records),
            ("POST", agent + "CalculateDays", self._agent_calculate_days),
            ("POST", agent + "Save", self._agent_save),
            ("POST", agent + "Delete", self._agent_delete),
            ("POST", agent + "Move", self._agent_move),
            ("POST", agent + "UpdateAppointmentWithMode", self._agent_update_with_mode),
            ("GET", r"/api/v1/Webhook", self._webhook_list),
            ("POST", r"/api/v1/Webhook", self._webhook_create),
            ("POST", r"/api/v1/Webhook/Test", self._webhook_test),
            ("GET", r"/api/v1/Webhook/(\d+)", self._webhook_get),
            ("PUT", r"/api/v1/Webhook/(\d+)", self._webhook_put),
            ("DELETE", r"/api/v1/Webhook/(\d+)", self._webhook_delete),
        ]

    def _row(self, appointment_id: int) -> Row:
        try:
            return self.tenant.row(int(appointment_id))
        except NotFound:
            raise Reply(
                404, {"Error": "NotFound", "Message": f"appointment {appointment_id}"}
            ) from None

    def _unmodified_since(self, row: Row, headers: dict[str, str]) -> None:
        try:
            self.tenant.check_unmodified_since(row, http_date(headers.get("if-unmodified-since")))
        except PreconditionFailed:
            raise Reply(412, {"Error": "PreconditionFailed", "Message": "changed since"}) from None

    def _entity(self, row: Row) -> tuple[int, Any, dict[str, str]]:
        return 200, carriers.appointment_entity(self.tenant, row), self._last_modified(row)

    @staticmethod
    def _last_modified(row: Row) -> dict[str, str]:
        return {
            "Last-Modified": row.updated.replace(tzinfo=UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
        }

    # entity API

    def _list(self, _who: int, query: dict[str, str], *_: Any) -> tuple[int, Any, dict[str, str]]:
        try:
            listing = carriers.archive_list(self.tenant, query)
        except (carriers.FilterError, ValueError) as error:
            raise Reply(400, {"Error": "BadRequest", "Message": str(error)}) from None
        listing["odata.metadata"] = f"{self.base_url}/api/v1/$metadata"
        if "odata.nextLink" in listing:
            listing["odata.nextLink"] = (
                f"{self.base_url}/api/v1/Appointment?{listing['odata.nextLink']}"
            )
        return 200, listing, {}

    def _post_entity(
        self, who: int, _q: Any, _h: Any, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        try:
            return self._entity(self.tenant.create(body or {}, who))
        except RecurrenceError as error:
            raise Reply(400, {"Error": "BadRequest", "Message": str(error)}) from None

    def _get_entity(self, _w: int, _q: Any, headers: dict[str, str], _b: Any, row_id: str) -> Any:
        row = self._row(int(row_id))
        since = http_date(headers.get("if-modified-since"))
        if since is not None and row.updated <= since:
            return 304, None, self._last_modified(row)
        return self._entity(row)

    def _put_entity(self, _w: int, _q: Any, headers: dict[str, str], body: Any, row_id: str) -> Any:
        row = self._row(int(row_id))
        self._unmodified_since(row, headers)
        if not body:
            raise Reply(400, {"Error": "BadRequest", "Message": "no entity in the body"})
        return self._entity(self.tenant.save_with_mode(row, body, "OnlyThis"))

    def _delete_entity(
        self, _w: int, _q: Any, headers: dict[str, str], _b: Any, row_id: str
    ) -> Any:
        row = self._row(int(row_id))
        self._unmodified_since(row, headers)
        self.tenant.delete_row(row)
        return 204, None, {}

    # Agents API (If-Unmodified-Since honoured here too: *inferred*, see the docs page)

    def _agent_get(self, _w: int, query: dict[str, str], *_: Any) -> Any:
        return self._entity(self._row(int(query.get("appointmentEntityId", 0))))

    def _agent_records(self, _w: int, _q: Any, _h: Any, body: Any) -> Any:
        rule_id = int((body or {}).get("RecurrenceRuleId") or 0)
        mother_id = int((body or {}).get("MotherId") or 0)
        rows = self.tenant.series_rows(rule_id) if rule_id else []
        if not rule_id and mother_id in self.tenant.rows:
            rows = [self.tenant.rows[mother_id]]
        return 200, [carriers.appointment_slim(self.tenant, row) for row in rows], {}

    def _agent_calculate_days(self, _w: int, _q: Any, _h: Any, body: Any) -> Any:
        entity = (body or {}).get("AppointmentEntity") or {}
        info = dict(entity.get("Recurrence") or {})
        info.setdefault("StartDate", entity.get("StartDate"))
        try:
            days = expand(info)
        except (RecurrenceError, KeyError, TypeError) as error:
            raise Reply(400, {"Error": "BadRequest", "Message": str(error)}) from None
        start_time = parse_time(str(entity.get("StartDate") or info["StartDate"])).time()
        info["Dates"] = [
            {"Date": carriers.stamp(datetime.combine(day, start_time)), "IsConflict": False}
            for day in days
        ]
        return 200, info, {}

    def _agent_save(self, who: int, _q: Any, headers: dict[str, str], body: Any) -> Any:
        entity = (body or {}).get("AppointmentEntity") or {}
        mode = (body or {}).get("UpdateMode")
        try:
            if not entity.get("AppointmentId"):
                return self._entity(self.tenant.create(entity, who))
            row = self._row(int(entity["AppointmentId"]))
            self._unmodified_since(row, headers)
            return self._entity(self.tenant.save_with_mode(row, entity, mode))
        except RecurrenceError as error:
            raise Reply(400, {"Error": "BadRequest", "Message": str(error)}) from None

    def _agent_delete(self, _w: int, _q: Any, headers: dict[str, str], body: Any) -> Any:
        row = self._row(int((body or {}).get("AppointmentId") or 0))
        self._unmodified_since(row, headers)
        self.tenant.delete_with_mode(row, (body or {}).get("UpdateMode"))
        return 204, None, {}

    def _agent_move(self, _w: int, _q: Any, headers: dict[str, str], body: Any) -> Any:
        row = self._row(int((body or {}).get("AppointmentId") or 0))
        self._unmodified_since(row, headers)
        new_start = parse_time(str(body["NewStartTime"]))
        moved = self.tenant.move_with_mode(row, new_start, body.get("UpdateMode"))
        return self._entity(moved)

    def _agent_update_with_mode(self, _w: int, _q: Any, headers: dict[str, str], body: Any) -> Any:
        row = self._row(int((body or {}).get("Id") or 0))
        self._unmodified_since(row, headers)
        entity: dict[str, Any] = {}
        if body.get("StartTime"):
            entity["StartDate"] = body["StartTime"]
        if body.get("EndTime"):
            entity["EndDate"] = body["EndTime"]
        if body.get("Status") in STATUS_NUMBERS:
            entity["Completed"] = body["Status"]
        if body.get("Type") in TYPE_NUMBERS:
            entity["Type"] = body["Type"]
        saved = self.tenant.save_with_mode(row, entity, body.get("UpdateMode"))
        if body.get("AssociateId"):
            self.tenant.update_row(saved, associate_id=int(body["AssociateId"]))
        return 200, carriers.appointment_slim(self.tenant, saved), {}

    # webhooks

    def _hook(self, webhook_id: str) -> Webhook:
        hook = self.webhooks.hooks.get(int(webhook_id))
        if hook is None:
            raise Reply(404, {"Error": "NotFound", "Message": f"webhook {webhook_id}"})
        return hook

    def _hook_from(self, body: Any, webhook_id: int) -> Webhook:
        target = str((body or {}).get("TargetUrl") or "")
        parts = urlsplit(target)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise Reply(400, {"Error": "BadRequest", "Message": "TargetUrl must be HTTPS"})
        return Webhook(
            webhook_id=webhook_id,
            name=str(body.get("Name") or ""),
            events=list(body.get("Events") or []),
            target_url=target,
            secret=str(body.get("Secret") or ""),
            state=str(body.get("State") or "Active"),
            type=str(body.get("Type") or "webhook"),
        )

    def _webhook_list(self, *_: Any) -> Any:
        return 200, [hook.carrier() for hook in self.webhooks.hooks.values()], {}

    def _webhook_create(self, who: int, _q: Any, _h: Any, body: Any) -> Any:
        hook = self._hook_from(body, next(self._webhook_ids))
        ok, message = self.webhooks.test_call(hook, who)
        if not ok:
            raise Reply(400, {"Error": "WebhookTestFailed", "Message": message})
        self.webhooks.hooks[hook.webhook_id] = hook
        return 200, hook.carrier(), {}

    def _webhook_test(self, who: int, _q: Any, _h: Any, body: Any) -> Any:
        ok, message = self.webhooks.test_call(self._hook_from(body, 0), who)
        return 200, {"Success": ok, "Message": message}, {}

    def _webhook_get(self, _w: int, _q: Any, _h: Any, _b: Any, webhook_id: str) -> Any:
        return 200, self._hook(webhook_id).carrier(), {}

    def _webhook_put(self, _w: int, _q: Any, _h: Any, body: Any, webhook_id: str) -> Any:
        old = self._hook(webhook_id)
        hook = self._hook_from(body, old.webhook_id)
        if hook.state == "Active":
            hook.consecutive_failures = 0
        self.webhooks.hooks[old.webhook_id] = hook
        return 200, hook.carrier(), {}

    def _webhook_delete(self, _w: int, _q: Any, _h: Any, _b: Any, webhook_id: str) -> Any:
        del self.webhooks.hooks[self._hook(webhook_id).webhook_id]
        return 204, None, {}
